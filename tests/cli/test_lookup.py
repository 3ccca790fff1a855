"""``dv365 lookup``: found or not, the version, norm, shape and first values per user."""

from __future__ import annotations

import numpy as np

from dv365.cli import app as cli_app
from dv365.stores import open_store
from tests.stores.snapshots import vectors_of, write_snapshot
from tests.stores.test_base import put_raw


def test_lookup_prints_each_user_found_or_not(capsys, tmp_path):
    uri = f"lmdb://{tmp_path / 'store'}"
    with open_store(uri) as store:
        old = write_snapshot(store, [1, 2, 3], rows=3, dim=8, codec="fp16", created_ms=1)
        new = write_snapshot(store, [1, 2], rows=3, dim=8, codec="fp16", tag=10,
                             created_ms=2)
    assert cli_app.main(["lookup", uri, "2", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{uri}: version {new.id} (3x8 fp16)"
    norm = vectors_of(np.array([2]), 3, 8, tag=10).norm().item()
    assert lines[1] == f"user 2: found  norm {norm:.4g}  3x8  row 0: 12 12.02 12.03 12.05 ..."
    assert lines[2] == "user 3: not found"
    assert cli_app.main(["lookup", uri, "3", "--version", old.id]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("user 3: found  norm")


def test_lookup_reports_a_corrupt_record_as_not_found_with_a_warning(capsys, tmp_path):
    uri = f"lmdb://{tmp_path / 'store'}"
    with open_store(uri) as store:
        made = write_snapshot(store, [1, 2])
        put_raw(store, made.id, 2, b"\1" * made.record_size)
    assert cli_app.main(["lookup", uri, "1", "2"]) == 0
    out = capsys.readouterr().out
    assert "user 2: not found" in out
    assert "warning: " in out and "user 2 is corrupt (checksum mismatch)" in out


def test_lookup_in_a_store_without_versions_is_one_line(capsys, tmp_path):
    assert cli_app.main(["lookup", f"lmdb://{tmp_path / 'store'}", "1"]) == 1
    err = capsys.readouterr().err
    assert "the store has no current version" in err and len(err.strip().splitlines()) == 1
