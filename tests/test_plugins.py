"""The plugin system: built-ins, outside plugins, loud failures, autoload switches.

Most tests build a fresh plugin manager with ``load_plugins(extra=..., autoload=False)``; the
installed-plugin tests pip-install the example distribution ``plugins/dv365-softmix`` into the
project environment and run ``dv365`` in a subprocess (a fresh process sees the new entry
point).
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import click
import pytest

import dv365
from dv365 import hookspecs
from dv365 import plugins as plugin_mod
from dv365.cli import app as cli_app
from dv365.errors import NotFoundError
from dv365.plugins import PLUGIN_KINDS, PluginError, load_plugins

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "plugins" / "dv365-softmix"


class _Plugin:
    """A plugin object (pluggy needs hashable plugins)."""


def _plugin(**hooks):
    """A plugin object whose attributes are the given (already marked) functions."""
    plugin = _Plugin()
    for name, function in hooks.items():
        setattr(plugin, name, function)
    return plugin


def test_builtins_are_registered_through_the_hooks():
    loaded = load_plugins(autoload=False)
    assert {"fsa", "lce", "mlp", "transformer", "identity"} <= set(loaded.encoders.names())
    assert {"dlrm", "siamese"} <= set(loaded.backbones.names())
    assert {"ne", "auc", "mse"} <= set(loaded.metrics.names())
    assert {"linear", "hstu_prepend", "gatenet"} <= set(loaded.adapters.names())
    assert loaded.adapters.get("gatenet").origin == "builtin dv365.downstream.adapters"
    assert loaded.encoders.get("fsa").origin == "builtin dv365.model.encoders"
    assert loaded.metrics.get("mse").applies_to == ("regression",)


def test_an_extra_plugin_registers_an_encoder():
    @dv365.hookimpl
    def dv365_register_encoders(register):
        register("mine", lambda options, *, num_slices, dim: None, doc="my encoder")

    loaded = load_plugins(extra=(_plugin(dv365_register_encoders=dv365_register_encoders),),
                          autoload=False)
    assert loaded.encoders.get("mine").doc == "my encoder"


def test_a_misspelled_marked_hook_fails_loudly():
    @dv365.hookimpl
    def dv365_register_encoder(register):  # missing "s"
        pass

    with pytest.raises(PluginError, match="dv365_register_encoder") as info:
        load_plugins(extra=(_plugin(dv365_register_encoder=dv365_register_encoder),),
                     autoload=False)
    assert "dv365_register_encoders" in info.value.render()  # the suggestion


def test_a_misspelled_unmarked_hook_fails_loudly_too():
    def dv365_on_train_stp(step, losses, run_dir):
        pass

    with pytest.raises(PluginError, match="did you mean 'dv365_on_train_step'"):
        load_plugins(extra=(_plugin(dv365_on_train_stp=dv365_on_train_stp),), autoload=False)


def test_two_plugins_registering_one_name_fail_naming_both():
    @dv365.hookimpl
    def dv365_register_encoders(register):
        register("fsa", lambda options, *, num_slices, dim: None)

    class Impostor:
        pass

    impostor = Impostor()
    impostor.dv365_register_encoders = dv365_register_encoders
    with pytest.raises(PluginError) as info:
        load_plugins(extra=(impostor,), autoload=False)
    text = info.value.render()
    assert "encoder 'fsa' is registered twice" in text
    assert "builtin dv365.model.encoders" in text and "Impostor" in text


def test_a_plugin_failing_in_a_hook_is_named():
    @dv365.hookimpl
    def dv365_register_metrics(register):
        raise RuntimeError("boom")

    with pytest.raises(PluginError, match=r"failed in dv365_register_metrics: RuntimeError: "
                                          r"boom"):
        load_plugins(extra=(_plugin(dv365_register_metrics=dv365_register_metrics),),
                     autoload=False)


def test_an_unknown_name_suggests_a_close_one():
    loaded = load_plugins(autoload=False)
    with pytest.raises(NotFoundError, match="did you mean 'fsa'"):
        loaded.encoders.get("fas", where="encoder.type")


def _use_plugin_adding(monkeypatch, command: click.Command) -> None:
    """The process-wide plugins: the built-ins and one plugin adding ``command``."""

    @dv365.hookimpl
    def dv365_add_commands(cli):
        cli.add_command(command)

    loaded = load_plugins(extra=(_plugin(dv365_add_commands=dv365_add_commands),),
                          autoload=False)
    monkeypatch.setattr(plugin_mod, "_cached", loaded)


def test_a_plugin_adds_a_cli_command(monkeypatch, capsys):
    @click.command("hello")
    def hello():
        click.echo("hello from a plugin")

    _use_plugin_adding(monkeypatch, hello)
    assert cli_app.main(["hello"]) == 0
    assert capsys.readouterr().out.strip() == "hello from a plugin"


def test_dv365_plugins_lists_builtins(monkeypatch, capsys):
    monkeypatch.setattr(plugin_mod, "_cached", load_plugins(autoload=False))
    assert cli_app.main(["plugins", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"kind": "backbone", "name": "dlrm", "origin": "builtin dv365.model.backbones"} \
        .items() <= next(r for r in rows if r["name"] == "dlrm").items()


def test_dv365_plugins_lists_every_kind_in_table_order(monkeypatch, capsys):
    monkeypatch.setattr(plugin_mod, "_cached", load_plugins(autoload=False))
    assert cli_app.main(["plugins", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    kinds = [r["kind"] for r in rows]
    assert kinds == sorted(kinds, key=[k.name for k in PLUGIN_KINDS].index)
    assert [r["name"] for r in rows if r["kind"] == "metric"] == ["auc", "mse", "ne"]
    assert {"fp32", "fp16"} <= {r["name"] for r in rows if r["kind"] == "codec"}
    assert "lmdb" in {r["name"] for r in rows if r["kind"] == "store"}
    assert {"linear", "hstu_prepend", "gatenet"} <= {r["name"] for r in rows
                                                     if r["kind"] == "adapter"}
    assert cli_app.main(["plugins"]) == 0
    assert "none registered" not in capsys.readouterr().out  # every kind has a built-in


# ----------------------------------------------------------------- the kinds table
def test_the_kinds_table_names_every_registration_hook_and_registry():
    registration_hooks = {name for name in dir(hookspecs) if name.startswith("dv365_register_")}
    assert {kind.hook_name for kind in PLUGIN_KINDS} == registration_hooks
    loaded = load_plugins(autoload=False)
    for kind in PLUGIN_KINDS:
        assert kind.hook is getattr(hookspecs, kind.hook_name)
        assert kind.hook_name == f"dv365_register_{kind.plural}"
        registry = loaded.registry(kind.name)
        assert getattr(loaded, kind.plural) is registry and registry.kind == kind.name
    assert plugin_mod.KINDS == ("encoder", "backbone", "adapter", "experiment", "metric", "codec",
                                "store")
    with pytest.raises(AttributeError, match="encoderz"):
        loaded.encoderz


@pytest.mark.parametrize("kind", PLUGIN_KINDS, ids=lambda kind: kind.name)
def test_each_register_protocol_declares_the_keywords_its_kind_takes(kind):
    annotation = inspect.signature(kind.hook).parameters["register"].annotation
    protocol = getattr(hookspecs, annotation)
    keywords = {name for name, p in inspect.signature(protocol.__call__).parameters.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY}
    expected = {"doc"}
    if kind.takes_options:
        expected.add("options")
    if kind.applies_to is not None:
        expected.add("applies_to")
    assert keywords == expected


def test_register_refuses_a_keyword_its_kind_does_not_take():
    from pydantic import BaseModel

    @dv365.hookimpl
    def dv365_register_encoders(register):
        register("mine", lambda options, *, num_slices, dim: None, applies_to=("binary",))

    with pytest.raises(PluginError, match="encoder 'mine' with applies_to"):
        load_plugins(extra=(_plugin(dv365_register_encoders=dv365_register_encoders),),
                     autoload=False)

    @dv365.hookimpl
    def dv365_register_metrics(register):
        register("mine", lambda labels, predictions: 0.0, options=BaseModel)

    with pytest.raises(PluginError, match="metric 'mine' with options; a metric takes none"):
        load_plugins(extra=(_plugin(dv365_register_metrics=dv365_register_metrics),),
                     autoload=False)


def test_a_metric_applies_to_binary_tasks_unless_told():
    @dv365.hookimpl
    def dv365_register_metrics(register):
        register("mine", lambda labels, predictions: 0.0)

    loaded = load_plugins(extra=(_plugin(dv365_register_metrics=dv365_register_metrics),),
                          autoload=False)
    assert loaded.metrics.get("mine").applies_to == ("binary",)
    assert loaded.encoders.get("fsa").applies_to == ()


# ----------------------------------------------------------------- the installed example
def _installed() -> bool:
    try:
        metadata.distribution("dv365-softmix")
        return True
    except metadata.PackageNotFoundError:
        return False


@pytest.fixture(scope="module")
def softmix_installed():
    """The example plugin pip-installed (editable) into the environment for these tests, and
    removed after this module: this process cannot import a distribution installed after it
    started, so a later test that autoloads plugins in-process would fail on its entry point."""
    was_installed = _installed()
    if not was_installed:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                        "--no-build-isolation", "-e", str(EXAMPLE)], check=True)
    yield
    if not was_installed:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-q", "-y", "dv365-softmix"],
                       check=True)


def _dv365(*args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items()
                if k not in (plugin_mod.DISABLE_AUTOLOAD_ENV, plugin_mod.ALLOWLIST_ENV)}
    full_env.update(env)
    return subprocess.run([sys.executable, "-m", "dv365.cli.app", *args], capture_output=True,
                          text=True, env=full_env, cwd=ROOT)


def _encoders(result: subprocess.CompletedProcess) -> dict[str, str]:
    assert result.returncode == 0, result.stderr
    return {r["name"]: r["origin"] for r in json.loads(result.stdout) if r["kind"] == "encoder"}


def test_the_installed_example_is_listed_with_its_origin(softmix_installed):
    encoders = _encoders(_dv365("plugins", "--json"))
    assert encoders["softmix"] == "dv365-softmix 0.1.0"
    assert encoders["fsa"] == "builtin dv365.model.encoders"


def test_autoload_can_be_disabled(softmix_installed):
    encoders = _encoders(_dv365("plugins", "--json", DV365_DISABLE_PLUGIN_AUTOLOAD="1"))
    assert "softmix" not in encoders and "fsa" in encoders


def test_the_allowlist_selects_plugins(softmix_installed):
    assert "softmix" in _encoders(_dv365("plugins", "--json", DV365_PLUGINS="dv365-softmix"))
    result = _dv365("plugins", "--json", DV365_PLUGINS="dv365-nosuch")
    assert result.returncode == 2
    assert "DV365_PLUGINS: error: DV365_PLUGINS names dv365-nosuch" in result.stderr
    assert "Traceback" not in result.stderr


def test_train_with_the_installed_encoder_by_name(softmix_installed, tmp_path):
    from dv365.data.synth import SynthConfig, synthesize
    from tests.model.conftest import tiny_spec, write_config

    data = tmp_path / "data"
    synthesize(data, SynthConfig(users=20, seed=5, mean_events=200, max_events=500, days=3,
                                 examples_per_user=12))
    spec = tmp_path / "spec.json"
    spec.write_text(tiny_spec().to_json())
    config = write_config(tmp_path, data, spec, steps=2, eval_every=2,
                          encoder={"type": "softmix", "outputs": 3, "temperature": 0.5})
    result = _dv365("train", str(config))
    assert result.returncode == 0, result.stderr
    assert "trained 2 steps" in result.stdout
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["encoder"] == {"type": "softmix", "outputs": 3, "temperature": 0.5}
    # Its options are validated by the plugin's own model.
    bad = write_config(tmp_path, data, spec, encoder={"type": "softmix", "temprature": 1})
    result = _dv365("train", str(bad))
    assert result.returncode == 2
    assert "encoder.temprature: error: unknown key (did you mean 'temperature'?)" in \
        result.stderr


def test_a_plugin_failing_to_add_commands_is_named_in_one_line(monkeypatch, capsys):
    @dv365.hookimpl
    def dv365_add_commands(cli):
        raise RuntimeError("no\ncommands today")

    loaded = load_plugins(extra=(_plugin(dv365_add_commands=dv365_add_commands),),
                          autoload=False)
    monkeypatch.setattr(plugin_mod, "_cached", loaded)
    assert cli_app.main(["plugins"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("failed in dv365_add_commands: RuntimeError: no commands today")
    assert "_Plugin" in err and len(err.splitlines()) == 1


def test_a_raising_encoder_factory_is_named_builtins_are_not_wrapped():
    @dv365.hookimpl
    def dv365_register_encoders(register):
        def broken(options, *, num_slices, dim):
            raise ValueError("bad shapes")

        register("broken", broken)

    loaded = load_plugins(extra=(_plugin(dv365_register_encoders=dv365_register_encoders),),
                          autoload=False)
    with pytest.raises(PluginError) as info:
        loaded.encoders.get("broken").factory(None, num_slices=2, dim=4)
    assert info.value.render().startswith("error: encoder 'broken' of plugin _Plugin")
    assert info.value.render().endswith("failed: ValueError: bad shapes")
    assert loaded.encoders.get("fsa").origin == "builtin dv365.model.encoders"
    assert not hasattr(loaded.encoders.get("fsa").factory, "__wrapped__")


def test_a_plugin_raising_system_exit_in_a_hook_is_an_error_not_an_exit():
    @dv365.hookimpl
    def dv365_register_metrics(register):
        raise SystemExit(0)

    with pytest.raises(PluginError, match="failed in dv365_register_metrics: SystemExit: 0"):
        load_plugins(extra=(_plugin(dv365_register_metrics=dv365_register_metrics),),
                     autoload=False)


class _FakeDistribution:
    """An installed distribution with one dv365 entry point (what pluggy and
    importlib.metadata show of it)."""

    def __init__(self, name: str, module: str):
        self.metadata = {"name": name}
        self.version = "0.1"
        self.entry_points = [metadata.EntryPoint(name=name, value=module, group="dv365")]


def test_a_plugin_exiting_at_import_cannot_make_a_failing_command_succeed(
        tmp_path, monkeypatch, capsys):
    (tmp_path / "dv365_exiter.py").write_text("raise SystemExit(0)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(plugin_mod.DISABLE_AUTOLOAD_ENV, raising=False)
    monkeypatch.delenv(plugin_mod.ALLOWLIST_ENV, raising=False)
    monkeypatch.setattr(metadata, "distributions",
                        lambda: [_FakeDistribution("dv365-exiter", "dv365_exiter")])
    monkeypatch.setattr(plugin_mod, "_cached", None)
    assert cli_app.main(["compile", str(tmp_path / "nope.slice")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dv365: error: plugin dv365-exiter 0.1 (entry point 'dv365-exiter') "
                          "failed at import: SystemExit: 0")
    assert len(err.splitlines()) == 1


def test_a_plugin_replacing_a_command_is_refused(monkeypatch, capsys):
    @click.command("compile")
    def impostor():
        click.echo("not the compiler")

    _use_plugin_adding(monkeypatch, impostor)
    assert cli_app.main(["compile", "x.slice"]) == 2
    assert "replaces the command 'compile'" in capsys.readouterr().err
