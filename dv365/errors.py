"""User-facing errors.

Every error a user can cause (a malformed spec, a broken Parquet file, a wrong config, a
missing user) is a :class:`Dv365Error`: it renders as one line that starts with where the
problem is (``file:line:col``, ``file/row/column`` or a config key) and, where we can guess
it, how to fix it. The CLI prints it without a traceback and exits with ``exit_code``.
"""

from __future__ import annotations


class Dv365Error(Exception):
    """An error caused by the user's input, rendered as ``where: error: message``."""

    exit_code = 1

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.where = where
        self.hint = hint

    def render(self) -> str:
        """The text shown to the user (one line unless a subclass adds source context)."""
        text = f"{self.where}: error: {self.message}" if self.where else f"error: {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text

    def __str__(self) -> str:
        return self.render()


class DataError(Dv365Error):
    """Invalid input data: a Parquet file, a column, a row."""


class ConfigError(Dv365Error):
    """An invalid configuration value; ``where`` is the key path."""

    exit_code = 2


class UsageError(Dv365Error):
    """A command used wrongly (bad option combination, refusing to overwrite)."""

    exit_code = 2


class NotFoundError(Dv365Error):
    """Something asked for by name or id does not exist (a user, a plugin, a file)."""
