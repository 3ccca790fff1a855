"""Files and folders are replaced all-or-nothing; a failed write leaves what was there."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dv365.atomic_write import (
    atomic_path,
    discard,
    recover,
    replace_directory,
    staged_directory,
    write_bytes,
    write_text,
)
from dv365.errors import UsageError


ROOT = Path(__file__).resolve().parents[1]


def _siblings(folder):
    return sorted(p.name for p in folder.iterdir())


def test_write_replaces_the_whole_file(tmp_path):
    path = tmp_path / "a" / "f.txt"
    write_text(path, "old")
    write_bytes(path, b"new")
    assert path.read_bytes() == b"new"
    assert _siblings(path.parent) == ["f.txt"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "f.bin"
    write_bytes(path, b"current")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed while writing")
    assert path.read_bytes() == b"current"
    assert _siblings(tmp_path) == ["f.bin"]


def test_the_temporary_is_a_hidden_sibling(tmp_path):
    with atomic_path(tmp_path / "x.pt") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".x.pt.")
        tmp.write_bytes(b"1")


def test_failure_leaves_previous_folder_untouched(tmp_path):
    out = tmp_path / "out"
    with staged_directory(out) as stage:
        (stage / "keep").write_text("old")
    with pytest.raises(RuntimeError):
        with staged_directory(out, if_exists="replace") as stage:
            (stage / "keep").write_text("new")
            raise RuntimeError("interrupted")
    assert (out / "keep").read_text() == "old"
    assert _siblings(tmp_path) == ["out"]


def test_refuses_to_overwrite_unless_asked(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(UsageError, match="already exists.*--force"):
        with staged_directory(tmp_path / "out"):
            pass


def test_replace_swaps_the_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale").write_text("x")
    with staged_directory(out, if_exists="replace") as stage:
        (stage / "fresh").write_text("y")
    assert _siblings(out) == ["fresh"]
    assert _siblings(tmp_path) == ["out"]


def test_keep_lets_a_concurrent_builder_win(tmp_path):
    out = tmp_path / "out"
    with staged_directory(out, if_exists="keep") as stage:
        (stage / "mine").write_text("1")
        out.mkdir()  # another process finished the same build first
        (out / "theirs").write_text("1")
    assert _siblings(out) == ["theirs"]
    assert _siblings(tmp_path) == ["out"]


# ------------------------------------------------------------------ replacing under kills

# Runs one replacement of OUT (old content: a = b = "old") by a stage written in two steps,
# SIGKILLing itself at the AT-th step (every rename, swap, sync, removal and write counts
# twice: just before and just after it). With NOSWAP the two-rename fallback is used.
_KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
import dv365.atomic_write as aw

out, at, swap = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "swap"
calls = 0

def kill_point():
    global calls
    calls += 1
    if calls == at:
        os.kill(os.getpid(), signal.SIGKILL)

def step(fn):
    def wrapped(*args, **kwargs):
        kill_point()
        result = fn(*args, **kwargs)
        kill_point()
        return result
    return wrapped

if not swap:
    aw._exchange = lambda a, b: False
aw._exchange, aw._remove, aw.sync_tree, aw._fsync_dir = (
    step(aw._exchange), step(aw._remove), step(aw.sync_tree), step(aw._fsync_dir))
os.rename = step(os.rename)
with aw.staged_directory(out, if_exists="replace") as stage:
    step((stage / "a").write_text)("new")
    step((stage / "b").write_text)("new")
"""


def _content(folder):
    return {p.name: p.read_text() for p in folder.iterdir()}


def _old_out(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a").write_text("old")
    (out / "b").write_text("old")
    return out


@pytest.mark.parametrize("swap", ["swap", "rename"])
def test_a_kill_at_any_point_of_a_replacement_keeps_out_or_its_old_content(tmp_path, swap):
    import dv365.atomic_write as aw

    if swap == "swap" and aw._RENAMEAT2 is None:
        pytest.skip("no renameat2 here")
    old, new = {"a": "old", "b": "old"}, {"a": "new", "b": "new"}
    seen = set()
    for at in range(1, 200):
        case = tmp_path / str(at)
        case.mkdir()
        out = _old_out(case)
        done = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(out), str(at), swap],
                              cwd=ROOT, capture_output=True, text=True)
        if done.returncode == 0:
            break
        assert done.returncode == -signal.SIGKILL, done.stderr
        if out.exists():
            state = _content(out)
            assert state in (old, new), f"kill point {at}: {state}"
            seen.add("old" if state == old else "new")
        else:  # only between the fallback's two renames: the backup holds the old content
            assert swap == "rename", f"kill point {at}: out missing"
            (backup,) = case.glob(".out.old-*")
            assert _content(backup) == old
            seen.add("backup")
        # The next writer of OUT finds it whole, with no leftovers next to it.
        recover(out)
        assert _siblings(case) == ["out"], f"kill point {at}"
        assert _content(out) in (old, new)
        with staged_directory(out, if_exists="replace") as stage:
            (stage / "c").write_text("next")
        assert _siblings(case) == ["out"] and _content(out) == {"c": "next"}
    else:
        pytest.fail("the writer never finished")
    assert at > 10  # it was killed at every step before finishing
    assert seen == ({"old", "new", "backup"} if swap == "rename" else {"old", "new"})


def test_a_failed_second_rename_restores_the_old_folder(tmp_path, monkeypatch):
    import dv365.atomic_write as aw

    out = _old_out(tmp_path)
    monkeypatch.setattr(aw, "_exchange", lambda a, b: False)
    real, calls = os.rename, []

    def rename(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the new folder into place
            raise OSError("disk gone")
        real(src, dst)

    monkeypatch.setattr(aw.os, "rename", rename)
    with pytest.raises(OSError, match="disk gone"):
        with staged_directory(out, if_exists="replace") as stage:
            (stage / "a").write_text("new")
    assert _content(out) == {"a": "old", "b": "old"}
    assert _siblings(tmp_path) == ["out"]


def test_a_failed_swap_keeps_the_old_folder(tmp_path, monkeypatch):
    import dv365.atomic_write as aw

    out = _old_out(tmp_path)

    def refuse(a, b):
        raise OSError("no space")

    monkeypatch.setattr(aw, "_exchange", refuse)
    with pytest.raises(OSError, match="no space"):
        with staged_directory(out, if_exists="replace") as stage:
            (stage / "a").write_text("new")
    assert _content(out) == {"a": "old", "b": "old"}
    assert _siblings(tmp_path) == ["out"]


def test_replace_directory_swaps_in_one_step(tmp_path):
    out = _old_out(tmp_path)
    new = tmp_path / ".out.partial-x"
    new.mkdir()
    (new / "c").write_text("new")
    replace_directory(new, out)
    assert _content(out) == {"c": "new"} and _siblings(tmp_path) == ["out"]


# ------------------------------------------------------------------ leftovers of dead writers

def _dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _leftover(folder, name, tag, pid, host=None, content="x"):
    import dv365.atomic_write as aw

    host = aw._HOST if host is None else host
    path = folder / f".{name}.{tag}-{host}-{pid}-0123abcd"
    path.mkdir()
    (path / "f").write_text(content)
    return path


def test_stale_staging_folders_of_dead_processes_are_removed(tmp_path):
    out = _old_out(tmp_path)
    dead = _dead_pid()
    _leftover(tmp_path, "out", "partial", dead)
    _leftover(tmp_path, "out", "trash", dead)
    _leftover(tmp_path, "out", "old", dead)  # OUT is there: a finished replacement's backup
    legacy = tmp_path / f".out.partial-{dead}-0123abcd"  # the names earlier versions wrote
    legacy.mkdir()
    alive = _leftover(tmp_path, "out", "partial", os.getppid())
    mine = _leftover(tmp_path, "out", "partial", os.getpid())
    elsewhere = _leftover(tmp_path, "out", "partial", dead, host="ffffff")
    other = _leftover(tmp_path, "out2", "partial", dead)
    nested = _leftover(tmp_path, "out.v2", "partial", dead)
    with staged_directory(out, if_exists="replace") as stage:
        (stage / "a").write_text("new")
    assert _content(out) == {"a": "new"}
    assert _siblings(tmp_path) == sorted(p.name for p in
                                         [out, alive, mine, elsewhere, other, nested])


def test_a_backup_with_out_missing_is_restored_before_anything_else(tmp_path):
    out = tmp_path / "out"
    _leftover(tmp_path, "out", "old", _dead_pid(), content="old")
    with pytest.raises(UsageError, match="already exists"):  # it is OUT again
        with staged_directory(out):
            pass
    assert _content(out) == {"f": "old"} and _siblings(tmp_path) == ["out"]


def test_a_live_writers_backup_is_left_alone(tmp_path):
    out = tmp_path / "out"
    backup = _leftover(tmp_path, "out", "old", os.getppid())
    assert recover(out) == []
    assert not out.exists() and backup.exists()


def test_discard_leaves_no_half_folder(tmp_path):
    folder = _old_out(tmp_path)
    discard(folder)
    discard(folder)  # gone already: fine
    assert _siblings(tmp_path) == []
