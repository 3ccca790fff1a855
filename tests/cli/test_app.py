"""The dv365 command: version, help, and how errors reach the user."""

import subprocess
import sys

import pytest

from dv365 import __version__
from dv365.cli import app as cli_app
from dv365.errors import ConfigError, DataError


def _group_with(function):
    """A throwaway CLI holding one command, so tests never touch the real app."""
    import typer

    app = typer.Typer()
    app.callback()(lambda: None)
    app.command(function.__name__)(function)
    return typer.main.get_command(app)


def test_version(capsys):
    assert cli_app.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"dv365 {__version__}"


def test_help_lists_registered_commands(capsys):
    assert cli_app.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "Usage" in out


def test_unknown_command_is_a_usage_error():
    assert cli_app.main(["no-such-command"]) == 2


@pytest.mark.parametrize(
    "error, code, text",
    [
        (DataError("negative value -3.0", where="e/part-0.parquet: row 7: column 'dwell_time'"), 1,
         "e/part-0.parquet: row 7: column 'dwell_time': error: negative value -3.0"),
        (ConfigError("unknown key", where="model.encoder.nam", hint="did you mean 'name'?"), 2,
         "model.encoder.nam: error: unknown key (did you mean 'name'?)"),
    ],
)
def test_user_errors_are_one_line_without_traceback(monkeypatch, capsys, error, code, text):
    def boom() -> None:
        raise error

    monkeypatch.setattr(cli_app, "build_cli", lambda: _group_with(boom))
    assert cli_app.main(["boom"]) == code
    err = capsys.readouterr().err
    assert err.strip() == text
    assert "Traceback" not in err


def test_unexpected_exceptions_are_one_line_unless_debug(monkeypatch, capsys):
    def crash() -> None:
        raise RuntimeError("kaput")

    monkeypatch.setattr(cli_app, "build_cli", lambda: _group_with(crash))
    assert cli_app.main(["crash"]) == 1
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: kaput" in err and "Traceback" not in err
    monkeypatch.setitem(cli_app._state, "debug", True)
    with pytest.raises(RuntimeError):
        cli_app.main(["crash"])


def test_console_script_exit_code():
    proc = subprocess.run([sys.executable, "-m", "dv365.cli.app", "--version"],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and __version__ in proc.stdout
