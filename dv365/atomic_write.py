"""Writing files and folders so that no reader ever sees half of one.

Every writer in dv365 (compiled artifacts, generated kernel modules, checkpoints, the
timeline cache, datasets, and the stores' snapshots) goes through this module. A file is
written to a temporary sibling, flushed to disk (``fsync``), and renamed over its target; the
folder is then synced so the rename itself survives a crash. A folder is built in a hidden
staging sibling and put into place the same way; replacing an existing folder swaps the two
in one step where the OS can (:func:`replace_directory`), so a kill at any point leaves the
old folder or the new one, never neither. An exception before that leaves the target exactly
as it was and removes the staging sibling; after a kill, the hidden siblings a process left
carry its host and process id in their names, and the next writer of the same target
removes them (or restores a backup) once that process is gone (:func:`recover`).
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import re
import shutil
import socket
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Literal

from dv365.errors import UsageError

__all__ = ["atomic_path", "write_bytes", "write_text", "staged_directory", "replace_directory",
           "discard", "recover", "sync_tree"]

# Names a leftover's owner: a short hash of the host (folders may be shared between machines,
# whose process ids mean nothing here) and the process id. Names without the host are what
# earlier versions wrote, always on the host that reads them.
_HOST = hashlib.blake2b(socket.gethostname().encode(), digest_size=3).hexdigest()
_LEFTOVER = re.compile(r"\.(?P<name>.+)\.(?P<tag>partial|old|trash)-"
                       r"(?:(?P<host>[0-9a-f]{6})-)?(?P<pid>[0-9]+)-[0-9a-f]{8}")


def _sibling(path: Path, tag: str) -> Path:
    return path.parent / f".{path.name}.{tag}-{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


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
    ``replace`` (the complete new folder takes the old one's place in one step, see
    :func:`replace_directory`; the old one is then deleted), or ``keep`` (a concurrent
    builder of the same content won: the stage is discarded). On any exception the stage is
    removed and ``target`` is left as it was. What killed writers of ``target`` left behind
    is recovered first (:func:`recover`).
    """
    target = Path(target)
    recover(target)
    if if_exists == "refuse" and target.exists():
        raise UsageError(f"{target} already exists", where=str(target), hint=hint)
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = _sibling(target, "partial")
    stage.mkdir()
    try:
        yield stage
        sync_tree(stage)
    except BaseException:
        _remove(stage)
        raise
    if target.exists():
        if if_exists == "keep":
            _remove(stage)
            return
        if if_exists == "refuse":  # appeared while the stage was written
            _remove(stage)
            raise UsageError(f"{target} already exists", where=str(target), hint=hint)
        replace_directory(stage, target)
        return
    try:
        os.rename(stage, target)
    except OSError:
        _remove(stage)
        if if_exists == "keep" and target.exists():
            return
        raise
    _fsync_dir(target.parent)


def replace_directory(new: str | os.PathLike, target: str | os.PathLike) -> None:
    """Put the complete (synced) folder ``new``, a sibling of ``target``, at ``target`` and
    delete what was there, such that a kill at any point leaves ``target`` or its old content.

    Where the OS can swap two names in one step (Linux ``renameat2(RENAME_EXCHANGE)``) that
    is what happens: ``target`` is always there, old or new. Elsewhere the old one is first
    renamed to a hidden ``.<name>.old-*`` backup; a kill before the new one is renamed in
    leaves the backup, which :func:`recover` puts back.
    """
    new, target = Path(new), Path(target)
    try:
        swapped = _exchange(new, target)
    except FileNotFoundError:  # target went away meanwhile: nothing to keep
        swapped = False
    except BaseException:
        _remove(new)
        raise
    if swapped:
        _fsync_dir(target.parent)
        _remove(new)  # now the old content, under the stage's name until it is gone
        return
    old = None
    if os.path.lexists(target):
        old = _sibling(target, "old")
        try:
            os.rename(target, old)
        except BaseException:
            _remove(new)
            raise
    try:
        os.rename(new, target)
    except BaseException:
        if old is not None:
            os.rename(old, target)
        _remove(new)
        raise
    _fsync_dir(target.parent)
    if old is not None:
        _remove(old)


def discard(path: str | os.PathLike) -> None:
    """Delete a file or folder so that no reader sees half of it: it is renamed to a hidden
    ``.<name>.trash-*`` sibling first (which :func:`recover` removes if a kill stops the
    deletion). A path that is already gone is fine."""
    path = Path(path)
    trash = _sibling(path, "trash")
    try:
        os.rename(path, trash)
    except FileNotFoundError:
        return
    _remove(trash)


def recover(target: str | os.PathLike) -> list[Path]:
    """Clean up what killed writers of ``target`` left next to it; return the paths handled.

    Only leftovers whose owner (the host and process id in their name) is a process of this
    host that is no longer alive are touched: a backup ``.<name>.old-*`` is renamed back to
    ``target`` when ``target`` is missing (the old content was never replaced), and removed
    when ``target`` is there; staging (``.partial-*``) and trash (``.trash-*``) folders are
    removed.
    """
    target = Path(target)
    try:
        names = sorted(os.listdir(target.parent))
    except OSError:
        return []
    handled = []
    for name in names:
        m = _LEFTOVER.fullmatch(name)
        if m is None or m["name"] != target.name or _owner_alive(m["host"], int(m["pid"])):
            continue
        path = target.parent / name
        if m["tag"] == "old" and not os.path.lexists(target):
            try:
                os.rename(path, target)
            except OSError:
                continue  # still there for the next attempt
            _fsync_dir(target.parent)
        else:
            _remove(path)
        handled.append(path)
    return handled


def _owner_alive(host: str | None, pid: int) -> bool:
    """Whether a leftover's owner may still be at work (when in doubt: yes)."""
    if os.name != "posix" or (host is not None and host != _HOST):
        return True  # another machine's process cannot be asked
    if pid <= 0 or pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OverflowError:
        return False  # no process can have such an id
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except OSError:
            pass


def _load_renameat2():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError, TypeError):  # not glibc/Linux
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_RENAMEAT2 = _load_renameat2()
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV}


def _exchange(a: Path, b: Path) -> bool:
    """Swap the names ``a`` and ``b`` in one step; False where the OS or file system cannot."""
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in _UNSUPPORTED:
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))
