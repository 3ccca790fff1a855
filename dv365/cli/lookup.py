"""``dv365 lookup STORE_URI USER...``: what a store holds for some users."""

from __future__ import annotations

from typing import List, Optional

import typer

from dv365.console import stdout

FIRST_VALUES = 4


def lookup(
    uri: str = typer.Argument(..., help="Store URI: lmdb://PATH, redis://HOST:PORT/DB, ..."),
    users: List[int] = typer.Argument(..., help="User ids."),
    version: Optional[str] = typer.Option(None, "--version",
                                          help="Version to read (default: the current one)."),
) -> None:
    """Per user: found or not, the version read, the norm of the stored embedding, its
    shape (rows x dim) and the first values of row 0."""
    import warnings

    from dv365.stores import open_store
    from dv365.stores.base import CorruptRecordWarning

    with open_store(uri, where="STORE_URI") as store:
        manifest = store.manifest(version)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CorruptRecordWarning)
            got = store.get(users, version=manifest.id)
        corrupt = {w.message.args[0] for w in caught
                   if issubclass(w.category, CorruptRecordWarning)}
        say = lambda text: stdout.print(text, highlight=False, markup=False,  # noqa: E731
                                        soft_wrap=True)
        say(f"{store.display_uri}: version {got.version} ({manifest.rows}x{manifest.dim} "
            f"{manifest.codec})")
        for i, user in enumerate(users):
            if not got.found[i]:
                say(f"user {user}: not found")
                continue
            vectors = got.vectors[i]
            first = " ".join(f"{v:.4g}" for v in vectors[0, :FIRST_VALUES].tolist())
            more = " ..." if manifest.dim > FIRST_VALUES else ""
            say(f"user {user}: found  norm {vectors.norm().item():.4g}  "
                f"{manifest.rows}x{manifest.dim}  row 0: {first}{more}")
        for message in sorted(corrupt):
            say(f"warning: {message}")


def register(app: typer.Typer) -> None:
    app.command("lookup")(lookup)
