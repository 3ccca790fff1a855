"""The ``dv365`` command: assembles the command groups and turns errors into exit codes.

Each command group lives in its own module with a ``register(app)`` function. ``main`` runs
the Click group that typer builds, so that plugins can add Click commands to it, and renders
every :class:`~dv365.errors.Dv365Error` as one line on stderr (no traceback unless
``--debug``).
"""

from __future__ import annotations

import sys
from typing import Optional

import click
import typer

from dv365 import __version__
from dv365.console import stderr
from dv365.errors import Dv365Error

app = typer.Typer(
    name="dv365",
    help="Extremely long user-history modeling: slice specs, kernels, a foundation user encoder.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dv365 {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
) -> None:
    _state["debug"] = debug


# Command groups, in --help order. Each module has ``register(app: typer.Typer)``.
COMMAND_MODULES: tuple[str, ...] = (
    "synth", "importers", "validate", "inspect", "plugins", "compile", "explain", "train",
    "export", "store", "lookup", "eval", "report", "pipeline",
)


_registered: list[str] = []


def _register_commands() -> None:
    # Imported here, not at module top, so that `dv365 --version` stays fast; once per
    # process, since main() may run many times in one (tests).
    import importlib

    for name in COMMAND_MODULES:
        if name not in _registered:
            importlib.import_module(f"dv365.cli.{name}").register(app)
            _registered.append(name)


def build_cli() -> click.Group:
    """The Click group behind ``dv365`` (plugins add commands to it)."""
    _register_commands()
    cli = typer.main.get_command(app)
    from dv365.plugins import add_commands, get_plugins

    add_commands(get_plugins(), cli)
    return cli


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dv365`` console script; returns the exit code."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        cli = build_cli()
        rc = cli.main(args=args, prog_name="dv365", standalone_mode=False)
        return rc if isinstance(rc, int) else 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        stderr.print("aborted", style="red", highlight=False)
        return 130
    except click.ClickException as exc:
        exc.show()
        return 2
    except Dv365Error as exc:
        if _state["debug"] or "--debug" in args:
            raise
        stderr.print(exc.render(), style="red", highlight=False, markup=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        stderr.print("interrupted", style="red", highlight=False)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        if _state["debug"] or "--debug" in args:
            raise
        stderr.print(
            f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for a traceback)",
            style="red",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        return 1


def run() -> None:  # pragma: no cover - exercised through the console script
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    run()
