"""Files and folders are replaced all-or-nothing; a failed write leaves what was there."""

import pytest

from dv365.atomic_write import atomic_path, staged_directory, write_bytes, write_text
from dv365.errors import UsageError


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
