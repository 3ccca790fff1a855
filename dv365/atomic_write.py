"""Writing files and folders so that no reader ever sees half of one.

Every writer in dv365 (compiled artifacts, generated kernel modules, checkpoints, the
timeline cache, datasets, and the stores' snapshots) goes through this module. A file is
written to a temporary sibling, flushed to disk (``fsync``), and renamed over its target; the
folder is then synced so the rename itself survives a crash. A folder is built in a hidden
staging sibling and renamed into place the same way. An exception (or a kill) before the
rename leaves the target exactly as it was; the temporary sibling is removed on exceptions
and, after a kill, is a dot-file that no reader looks at.
"""

from __future__ import annotations

import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Literal

from dv365.errors import UsageError

__all__ = ["atomic_path", "write_bytes", "write_text", "staged_directory", "sync_tree"]


def _sibling(path: Path, tag: str) -> Path:
    return path.parent / f".{path.name}.{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # a platform or file system without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sync_tree(folder: Path) -> None:
    """``fsync`` every regular file under ``folder``, then the folders themselves."""
    for root, _dirs, files in os.walk(folder):
        for name in files:
            p = Path(root) / name
            if p.is_file() and not p.is_symlink():
                _fsync_file(p)
        _fsync_dir(Path(root))


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write (``torch.save``, ``np.save``, ...);
    when the block succeeds it is synced and renamed over ``path``, else removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(path, "tmp")
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data``, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8), atomically."""
    write_bytes(path, text.encode())


@contextmanager
def staged_directory(target: str | os.PathLike, *,
                     if_exists: Literal["refuse", "replace", "keep"] = "refuse",
                     hint: str = "pass --force to replace it") -> Iterator[Path]:
    """Yield a fresh hidden staging folder that becomes ``target`` when the block succeeds.

    ``if_exists`` says what happens when ``target`` is already there: ``refuse`` (a
    :class:`~dv365.errors.UsageError` before anything is written, with ``hint``),
    ``replace`` (the old folder is moved aside, the new one renamed in, the old one deleted),
    or ``keep`` (a concurrent builder of the same content won: the stage is discarded). On
    any exception the stage is removed and ``target`` is left as it was.
    """
    target = Path(target)
    if if_exists == "refuse" and target.exists():
        raise UsageError(f"{target} already exists", where=str(target), hint=hint)
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = _sibling(target, "partial")
    stage.mkdir()
    try:
        yield stage
        sync_tree(stage)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = None
    if target.exists():
        if if_exists == "keep":
            shutil.rmtree(stage, ignore_errors=True)
            return
        if if_exists == "refuse":  # appeared while the stage was written
            shutil.rmtree(stage, ignore_errors=True)
            raise UsageError(f"{target} already exists", where=str(target), hint=hint)
        old = _sibling(target, "old")
        os.rename(target, old)
    try:
        os.rename(stage, target)
    except OSError:
        if old is not None:
            os.rename(old, target)
        shutil.rmtree(stage, ignore_errors=True)
        if if_exists == "keep" and target.exists():
            return
        raise
    _fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
