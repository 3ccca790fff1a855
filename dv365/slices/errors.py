"""Spec errors: every problem found in a slice spec, each with file:line:col and a caret.

The front end never stops at the first problem it can recover from: the checker collects
:class:`Diagnostic` objects and raises one :class:`SpecError` holding all of them. Rendered,
each diagnostic reads like a compiler's::

    slices/reels.slice:12:34: error: unknown field 'dwel_time' (did you mean 'dwell_time'?)
        slice long: from implicit where dwel_time > 15s pool media_id into media mean
                                        ^^^^^^^^^
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable, Sequence

from dv365.errors import Dv365Error
from dv365.paths import display_path

# Long source lines are cut around the caret so that a minified or binary file stays readable.
_MAX_SHOWN = 120


@dataclass(frozen=True)
class Pos:
    """A span in one source file (1-based line and column, end column exclusive); shown as
    ``file:line:col`` with the file as :func:`~dv365.paths.display_path` spells it."""

    path: str
    line: int
    col: int
    end_line: int | None = None
    end_col: int | None = None

    def __str__(self) -> str:
        return self.shown_in(display_path(self.path))

    def shown_in(self, shown_path: str) -> str:
        """``file:line:col`` with the file spelled ``shown_path`` (for callers that show
        many positions of one file and spell its path once)."""
        return f"{shown_path}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Diagnostic:
    """One problem: where, what, and (when we can guess it) how to fix it."""

    pos: Pos
    message: str
    hint: str | None = None

    def render(self, sources: dict[str, str] | None = None) -> str:
        head = f"{self.pos}: error: {self.message}"
        if self.hint:
            head += f" ({self.hint})"
        source = (sources or {}).get(self.pos.path)
        excerpt = _excerpt(source, self.pos) if source is not None else None
        return head if excerpt is None else f"{head}\n{excerpt}"


def _excerpt(source: str, pos: Pos) -> str | None:
    lines = source.split("\n")
    if not 1 <= pos.line <= len(lines):
        return None
    text = lines[pos.line - 1].rstrip("\r").expandtabs(1)
    text = "".join(c if c.isprintable() else "?" for c in text)
    start = max(pos.col - 1, 0)
    if pos.end_line == pos.line and pos.end_col and pos.end_col > pos.col:
        width = pos.end_col - pos.col
    else:
        width = 1
    offset = 0
    if len(text) > _MAX_SHOWN:
        offset = max(0, min(start - _MAX_SHOWN // 2, len(text) - _MAX_SHOWN))
        text = text[offset:offset + _MAX_SHOWN]
    width = max(1, min(width, len(text) - (start - offset) if start - offset < len(text) else 1))
    return f"    {text}\n    {' ' * (start - offset)}{'^' * width}"


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """``"did you mean 'x'?"`` for the closest choice, or None when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


class SpecError(Dv365Error):
    """A slice spec with one or more errors (exit code 2); renders all of them."""

    exit_code = 2

    def __init__(self, diagnostics: Sequence[Diagnostic], sources: dict[str, str] | None = None):
        if not diagnostics:
            raise ValueError("SpecError needs at least one diagnostic")
        # Sorted by position; a generator body repeats its mistakes once per combination,
        # so identical diagnostics are shown once.
        unique = dict.fromkeys(diagnostics)
        self.diagnostics = tuple(sorted(unique, key=lambda d: (d.pos.path, d.pos.line,
                                                                d.pos.col)))
        self.sources = dict(sources or {})
        first = self.diagnostics[0]
        super().__init__(first.message, where=str(first.pos), hint=first.hint)

    def render(self) -> str:
        blocks = [d.render(self.sources) for d in self.diagnostics]
        if len(blocks) > 1:
            blocks.append(f"{len(blocks)} errors")
        return "\n".join(blocks)

    @property
    def messages(self) -> list[str]:
        """The one-line form of every diagnostic (what golden tests pin)."""
        return [d.render() for d in self.diagnostics]
