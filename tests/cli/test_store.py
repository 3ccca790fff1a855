"""``dv365 store``: versions, promote, rollback, gc, pin, verify and publish between stores."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dv365.cli import app as cli_app
from dv365.export.records import records_checksum
from dv365.export.sink import ShardDone
from dv365.stores import open_store
from tests.stores import conftest as store_fixtures
from tests.stores.snapshots import write_snapshot
from tests.stores.test_base import put_raw

T0 = 1_750_000_000_000  # 2025-06-15 15:06 UTC
uri = store_fixtures.store_uri


@pytest.fixture
def made(uri):
    """Three versions, the newest current."""
    with open_store(uri) as store:
        return [write_snapshot(store, np.arange(n), tag=100 * n, created_ms=T0 + k,
                               at_ms=T0, shard_size=40)
                for k, n in enumerate([100, 120, 150])]


def run(capsys, *args):
    code = cli_app.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_versions_lists_every_version_with_marks_shape_users_and_bytes(capsys, uri, made):
    with open_store(uri) as store:
        store.pin(made[0].id)
    code, out, _ = run(capsys, "store", "versions", uri)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"versions of {uri}"
    assert lines[1].split() == ["id", "at", "created", "codec", "shape", "users", "bytes"]
    first, second, third = (line.split() for line in lines[2:5])
    assert first[:2] == [made[0].id, "pinned"] and second[1] == "2025-06-15"
    assert third[:2] == [made[2].id, "current"]
    assert third[-4:] == ["fp32", "2x4", "150", f"{150 * made[2].record_size:,}"]


def test_versions_of_an_empty_store(capsys, uri):
    code, out, _ = run(capsys, "store", "versions", uri)
    assert code == 0 and "no versions yet" in out


def test_promote_rollback_and_their_refusals(capsys, uri, made):
    assert run(capsys, "store", "promote", uri, made[0].id)[:2] == (
        0, f"{uri}: current version {made[0].id}\n")
    assert run(capsys, "store", "rollback", uri)[1].endswith(f"{made[2].id}\n")
    code, _, err = run(capsys, "store", "promote", uri, "nope")
    assert code == 1 and "no version 'nope'" in err and len(err.strip().splitlines()) == 1


def test_gc_keeps_k_and_the_pinned_one(capsys, uri, made):
    assert run(capsys, "store", "pin", uri, made[0].id, "--note", "audit")[0] == 0
    code, out, _ = run(capsys, "store", "gc", uri, "--keep", "1", "--grace", "0")
    assert code == 0 and out.strip().endswith(f"removed 1 version(s): {made[1].id}")
    assert run(capsys, "store", "unpin", uri, made[0].id)[0] == 0
    assert run(capsys, "store", "gc", uri, "--keep", "1", "--grace", "0")[1].strip() \
        .endswith(made[0].id)
    assert run(capsys, "store", "gc", uri, "--keep", "0")[0] == 2


def test_verify_passes_a_sound_version_and_fails_a_damaged_one(capsys, uri, made):
    code, out, _ = run(capsys, "store", "verify", uri)
    assert code == 0 and out.strip().endswith(f"{made[2].checksum:016x}: ok")
    with open_store(uri) as store:
        put_raw(store, made[1].id, 7, b"\0" * made[1].record_size)
    code, _, err = run(capsys, "store", "verify", uri, made[1].id)
    assert code == 1
    assert "1 corrupt record(s); 119 valid records where the manifest says 120" in err
    assert len(err.strip().splitlines()) == 1


def test_publish_copies_a_snapshot_to_another_store_and_is_idempotent(capsys, tmp_path, uri,
                                                                     made):
    target = f"lmdb://{tmp_path / 'copy'}"
    code, out, _ = run(capsys, "store", "publish", "--from", uri, "--to", target,
                       "--version", made[1].id)
    assert code == 0 and f"published version {made[1].id} (120 users)" in out
    with open_store(target) as copy, open_store(uri) as original:
        assert copy.current_version() == made[1].id
        assert copy.manifest() == original.manifest(made[1].id)
        ids = np.arange(130)
        assert (copy.get(ids).vectors == original.get(ids, version=made[1].id).vectors).all()
    code, out, _ = run(capsys, "store", "publish", "--from", uri, "--to", target,
                       "--version", made[1].id)
    assert code == 0 and "there already" in out
    assert run(capsys, "store", "verify", target)[0] == 0


def test_publish_resumes_from_the_shards_already_copied(capsys, tmp_path, uri, made):
    target = f"lmdb://{tmp_path / 'copy'}"
    source = made[2]
    with open_store(uri) as src, open_store(target) as dst:  # an interrupted first copy
        staged = dst.stage(dataclasses.replace(source, users=None, bytes=None,
                                               checksum=None, recomputed=None))
        ids, opened = next(src.scan(source.id, batch_size=source.shard_size))
        staged.write(ids, opened.records)
        staged.finish_shard(ShardDone(0, len(ids), opened.records.nbytes,
                                      records_checksum(ids, opened.records), len(ids)))
    code, out, err = run(capsys, "store", "publish", "--from", uri, "--to", target)
    assert code == 0 and "resuming: 1 shard(s)" in err
    assert run(capsys, "store", "verify", target)[0] == 0


def test_publish_refuses_a_source_with_corrupt_records_and_publishes_nothing(
        capsys, tmp_path, uri, made):
    with open_store(uri) as store:
        put_raw(store, made[2].id, 3, b"short")
    target = f"lmdb://{tmp_path / 'copy'}"
    code, _, err = run(capsys, "store", "publish", "--from", uri, "--to", target)
    assert code == 1 and "1 corrupt record(s); not published" in err
    with open_store(target) as dst:
        assert dst.current_version() is None


def test_an_unknown_scheme_is_a_usage_error_listing_the_registered_ones(capsys):
    code, _, err = run(capsys, "store", "versions", "nosuch://x/y")
    assert code == 2
    assert "unknown store scheme 'nosuch://'" in err and "lmdb://" in err
    assert len(err.strip().splitlines()) == 1


def test_a_password_never_appears_in_an_error(capsys):
    code, _, err = run(capsys, "store", "versions", "nosuch://u:hunter2@host:1/0")
    assert code == 2 and "hunter2" not in err
