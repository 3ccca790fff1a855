"""The slice language's Lark grammar (``grammar/slice.lark``) and its one LALR parser.

The grammar file lives in the repository's ``grammar/`` folder, next to the ``dv365``
package; ``dv365/slices/slice.lark`` links to it so that wheels carry a copy. The parser is
built once per process (Lark's own cache keeps the LALR tables between processes).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from lark import Lark

from dv365.errors import NotFoundError

GRAMMAR_NAME = "slice.lark"

_CANDIDATES = (
    Path(__file__).resolve().parents[2] / "grammar" / GRAMMAR_NAME,  # a source checkout
    Path(__file__).resolve().parent / GRAMMAR_NAME,  # a copy shipped inside the package
)


def grammar_path() -> Path:
    """Where the grammar file is; a clear error when the install lacks it."""
    for path in _CANDIDATES:
        if path.is_file():
            return path
    raise NotFoundError(
        f"the slice grammar {GRAMMAR_NAME} is missing",
        where=str(_CANDIDATES[0]),
        hint="reinstall dv365 from a source checkout (pip install -e .)",
    )


def grammar_text() -> str:
    return grammar_path().read_text(encoding="utf-8")


@lru_cache(maxsize=None)
def parser() -> Lark:
    """The LALR parser (positions on every node; optional parts as ``None`` placeholders)."""
    return Lark(
        grammar_text(),
        start="module",
        parser="lalr",
        lexer="contextual",
        propagate_positions=True,
        maybe_placeholders=True,
        cache=True,
    )
