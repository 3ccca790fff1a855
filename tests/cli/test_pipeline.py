"""``dv365 pipeline``: cycles from the command line, their status table, one-line failures
that leave the current snapshot current, and cycles killed with SIGKILL at the worst moments
that, run again, end with exactly one new published version (the one an uninterrupted cycle
publishes)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dv365 import console
from dv365.cli.app import main
from dv365.pipeline.config import load_pipeline_config
from dv365.pipeline.state import PipelineState
from dv365.stores import open_store
from tests.cli.conftest import write_rated_log
from tests.pipeline.conftest import cycle, generated, land, write_pipeline

SHARED_FIXTURES = (generated,)
ROOT = Path(__file__).resolve().parents[2]


def _store(path: Path):
    return open_store(load_pipeline_config(path).store)


def test_run_then_status_shows_the_cycles_steps_and_snapshots(generated, tmp_path, capsys,
                                                              monkeypatch):
    path = write_pipeline(tmp_path / "p", generated)
    land(path, days=2)
    assert main(["pipeline", "run", str(path)]) == 0
    out = capsys.readouterr().out
    with _store(path) as store:
        current = store.current_version()
    assert f"cycle 1: export: full: 40 users -> {current}" in out
    assert "cycle 1: done in" in out and out.rstrip().endswith(f"current snapshot {current}")

    # a batch of another vocabulary: collect fails in one line, the snapshot stays current
    write_rated_log(tmp_path / "p" / "data" / "incoming" / "bad")
    assert main(["pipeline", "run", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "cycle 2: step collect failed: the landed events declare " \
                                "other dv365 metadata" in err
    with _store(path) as store:
        assert store.current_version() == current

    monkeypatch.setattr(console.stdout, "_width", 200)  # a wide terminal: no folded cells
    assert main(["pipeline", "status", str(path)]) == 0
    table = capsys.readouterr().out
    for text in ("cycle", "collect", "train", "export", "verify", "publish", "gc", current,
                 "failed", "batch(es)", "no checkpoint yet", "landed"):
        assert text in table, text


def test_bad_configs_and_cadences_are_one_line_errors(generated, tmp_path, capsys):
    path = write_pipeline(tmp_path / "p", generated, gc_keep=0)
    assert main(["pipeline", "run", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("pipeline.yaml: gc_keep: error: Input should be greater than or equal "
                        "to 1 (got 0)") and "\n" not in err
    path = write_pipeline(tmp_path / "q", generated, retrian={"every_cycles": 1})
    assert main(["pipeline", "run", str(path)]) == 2
    assert "retrian: error: unknown key (did you mean 'retrain'?)" in capsys.readouterr().err
    assert main(["pipeline", "schedule", str(path), "--every", "often"]) == 2
    assert "--every: error:" in capsys.readouterr().err
    assert main(["pipeline", "status", str(tmp_path / "none.yaml")]) == 2


@pytest.fixture(scope="module")
def killed_cycle(generated, tmp_path_factory):
    """A pipeline after one cycle, a day landed for the next (which retrains), and what the
    next cycle publishes when nothing kills it. ``restore()`` puts the folder back."""
    root = tmp_path_factory.mktemp("killed")
    work, pristine = root / "work", root / "pristine"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DV365_CACHE_DIR", str(root / "hashes"))
        path = write_pipeline(work, generated, retrain={"every_cycles": 1})
        land(path, days=2)
        first = cycle(path)
        land(path)
        shutil.copytree(work, pristine)
        second = cycle(path)
        with _store(path) as store:
            reference = store.manifest(second.snapshot)

    def restore() -> Path:
        shutil.rmtree(work)
        shutil.copytree(pristine, work)
        return path

    return restore, first.snapshot, reference, root / "hashes"


@pytest.mark.parametrize("point", ["train", "export-shard", "export", "publish"])
def test_a_cycle_killed_anywhere_publishes_exactly_once_when_run_again(killed_cycle, point,
                                                                        monkeypatch):
    restore, before, reference, hashes = killed_cycle
    monkeypatch.setenv("DV365_CACHE_DIR", str(hashes))
    path = restore()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "tests.cli.killed_pipeline", point, str(path)],
                          cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=600)
    assert proc.returncode == -signal.SIGKILL, (proc.stdout + proc.stderr).decode()[-3000:]
    config = load_pipeline_config(path)
    with _store(path) as store:
        # only the publish step makes a version current
        assert store.current_version() == (before if point != "publish" else
                                           store.versions()[-1].manifest.id)
    with PipelineState(config.state_path) as state:
        assert state.cycle(2).status == "running"  # killed: nobody recorded an end

    report = cycle(path)
    assert report.cycle == 2 and report.resumed
    with _store(path) as store:
        versions = [v.manifest for v in store.versions()]
        assert [m.id for m in versions[:-1]] == [before] and store.staged() == []
        new = versions[-1]
        assert store.current_version() == new.id == report.snapshot
        # the same records as the uninterrupted cycle's, from the same training step (the
        # checkpoint's bytes differ: it records the training's wall-clock speed)
        assert (new.users, new.checksum, Path(new.checkpoint).name) == (
            reference.users, reference.checksum, Path(reference.checkpoint).name)
    with PipelineState(config.state_path) as state:
        assert [c.status for c in state.cycles()] == ["done", "done"]
