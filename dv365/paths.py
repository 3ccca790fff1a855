"""How a path is spelled in messages: one form for every error and summary.

A path reaches dv365 however its user typed it (``configs/../specs/x.slice``) or a config made
it (``/home/me/proj/configs/../specs/x.slice``). :func:`display_path` spells it once for all
of them: ``.`` and ``..`` collapsed, relative to the working folder when it lies inside it,
absolute otherwise (``specs/x.slice``). Symbolic links are kept as typed, so a path through a
link still shows the link; only where collapsing ``link/..`` by its spelling would name
another file than the system opens is the link followed (:func:`absolute_path`).
"""

from __future__ import annotations

import os
from pathlib import Path


def absolute_path(path: str | os.PathLike) -> Path:
    """``path`` made absolute (against the working folder, ``~`` expanded) with ``.`` and
    ``..`` collapsed, naming the file the system would open for ``path``."""
    text = os.path.expanduser(os.fspath(path))
    lexical = os.path.abspath(text)
    if ".." in Path(text).parts:
        # The system takes `link/..` as the parent of the link's target, not the folder
        # holding the link; when the two differ, the followed path is the honest one.
        real = os.path.realpath(text)
        if os.path.realpath(lexical) != real:
            return Path(real)
    return Path(lexical)


def display_path(path: str | os.PathLike) -> str:
    """``path`` as messages show it: relative to the working folder when inside it (``.``
    for the folder itself), else absolute; ``..`` resolved. Names in angle brackets
    (``<spec>``, text that came from no file) are returned as they are."""
    text = os.fspath(path)
    if not text or text.startswith("<"):
        return text
    absolute = str(absolute_path(text))
    for base in _working_folders():
        if absolute == base:
            return "."
        prefix = base if base.endswith(os.sep) else base + os.sep
        if absolute.startswith(prefix):
            return absolute[len(prefix):]
    return absolute


def _working_folders() -> list[str]:
    """The working folder as the system and (when it names the same folder) the shell spell
    it: under a linked folder ``$PWD`` keeps the link, ``getcwd`` does not."""
    cwd = os.getcwd()
    folders = [cwd]
    shell = os.environ.get("PWD")
    if shell and shell != cwd and os.path.isabs(shell):
        try:
            if os.path.samefile(shell, cwd):
                folders.append(os.path.normpath(shell))
        except OSError:
            pass
    return folders
