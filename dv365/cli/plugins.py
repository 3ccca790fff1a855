"""``dv365 plugins``: every registered encoder, backbone, adapter and metric, and its origin."""

from __future__ import annotations

import json

import typer

from dv365.console import stdout
from dv365.plugins import PLUGIN_KINDS, get_plugins


def plugins(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the registered encoders, backbones, adapters and metrics and where each came from."""
    loaded = get_plugins()
    rows = [(kind.name, reg.name, reg.origin, reg.doc)
            for kind in PLUGIN_KINDS for reg in loaded.registry(kind.name)]
    if as_json:
        typer.echo(json.dumps([{"kind": k, "name": n, "origin": o, "doc": d}
                               for k, n, o, d in rows], indent=2))
        return
    from rich.table import Table

    table = Table(title="dv365 plugins", title_justify="left")
    for column in ("kind", "name", "origin", "description"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    stdout.print(table)
    empty = [kind.plural for kind in PLUGIN_KINDS if not len(loaded.registry(kind.name))]
    if empty:
        stdout.print(f"none registered: {', '.join(empty)}")


def register(app: typer.Typer) -> None:
    app.command("plugins")(plugins)
