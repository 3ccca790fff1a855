"""How the elaboration passes report problems: every one is kept, none stops the compiler.

A pass records a :class:`~dv365.slices.errors.Diagnostic` and, when the construct it is
reading cannot mean anything, raises :class:`Skip` to abandon just that construct; the
statement loop of each pass catches it and goes on, so that one run reports every problem.
"""

from __future__ import annotations

from dv365.slices.errors import Diagnostic, Pos


class Skip(Exception):
    """Raised once a diagnostic is recorded, to skip the broken construct."""


class Reporter:
    """The diagnostics of one elaboration, in the order they were found."""

    def __init__(self) -> None:
        self.diagnostics: list[Diagnostic] = []

    def error(self, pos: Pos, message: str, hint: str | None = None) -> None:
        """Record a problem and go on reading the construct."""
        self.diagnostics.append(Diagnostic(pos, message, hint))

    def fail(self, pos: Pos, message: str, hint: str | None = None) -> Skip:
        """Record a problem; the caller raises what this returns to skip the construct."""
        self.error(pos, message, hint)
        return Skip()
