"""The Store base behaviour (versions, reads, integrity, staging), through the LMDB store."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dv365.errors import NotFoundError, UsageError
from dv365.export.sink import ShardDone
from dv365.stores.base import CorruptRecordWarning, StoreError
from dv365.stores.lmdb_store import user_keys
from tests.stores.snapshots import draft, records_of, write_snapshot


def put_raw(store, version: str, user: int, value: bytes) -> None:
    """Overwrite one stored value behind the store's back."""
    store._write(lambda txn: txn.put(user_keys(np.array([user]))[0], value,
                                     db=store._version_db(version, txn)))


# ----------------------------------------------------------------------------- versions
def test_publish_makes_a_version_current_and_versions_lists_oldest_first(store):
    assert store.current_version() is None and store.versions() == []
    first = write_snapshot(store, [1, 2], created_ms=1)
    second = write_snapshot(store, [1, 2, 3], created_ms=2)
    infos = store.versions()
    assert [i.manifest.id for i in infos] == [first.id, second.id]
    assert [i.current for i in infos] == [False, True]
    assert infos[0].retired_ms is not None and infos[1].retired_ms is None
    assert store.manifest() == second and store.manifest(first.id) == first


def test_publish_without_make_current_leaves_readers_on_the_old_version(store):
    first = write_snapshot(store, [1])
    later = write_snapshot(store, [1, 2], make_current=False)
    assert store.current_version() == first.id
    store.promote(later.id)
    assert store.current_version() == later.id


def test_promote_refuses_an_unknown_version(store):
    write_snapshot(store, [1])
    with pytest.raises(NotFoundError, match="no version 'nope'"):
        store.promote("nope")


def test_rollback_goes_back_one_version_at_a_time_then_refuses(store):
    a = write_snapshot(store, [1], created_ms=1)
    b = write_snapshot(store, [1], created_ms=2)
    c = write_snapshot(store, [1], created_ms=3)
    assert store.rollback() == b.id and store.current_version() == b.id
    assert store.rollback() == a.id
    with pytest.raises(UsageError, match="no earlier version"):
        store.rollback()
    assert store.current_version() == a.id
    assert {i.manifest.id for i in store.versions()} == {a.id, b.id, c.id}


def test_gc_keeps_the_newest_and_never_the_current_pinned_or_in_grace(store):
    made = [write_snapshot(store, [1], created_ms=i) for i in range(6)]
    ids = [m.id for m in made]
    store.promote(ids[0])          # current, oldest
    store.pin(ids[1], "audit")     # pinned
    removed = store.gc(keep=2, grace_s=3600)   # everything retired just now: in grace
    assert removed == []
    removed = store.gc(keep=2, grace_s=0)
    assert sorted(removed) == sorted(ids[2:4])
    assert [i.manifest.id for i in store.versions()] == [ids[0], ids[1], ids[4], ids[5]]
    assert store.get([1]).found.all()
    store.unpin(ids[1])
    assert store.gc(keep=2, grace_s=0) == [ids[1]]


def test_gc_refuses_keep_below_one(store):
    with pytest.raises(UsageError, match="keep must be at least 1"):
        store.gc(keep=0)


def test_a_collected_version_is_gone_from_the_store(store):
    old = write_snapshot(store, np.arange(100), created_ms=1)
    write_snapshot(store, np.arange(100), created_ms=2)
    assert store.gc(keep=1, grace_s=0) == [old.id]
    assert store._count(old.id) == 0 and store._version_db is not None
    with pytest.raises(NotFoundError):
        store.get([1], version=old.id)


# -------------------------------------------------------------------------------- reads
def test_get_decodes_and_gives_zeros_and_false_for_missing_users(store):
    manifest = write_snapshot(store, [10, 20, 30], rows=3, dim=4, codec="fp16")
    got = store.get([20, 5, 30])
    assert got.version == manifest.id
    assert got.found.tolist() == [True, False, True]
    assert got.vectors.shape == (3, 3, 4)
    assert got.vectors[0, 2, 1].item() == 20 + 2 / 8 + 1 / 64
    assert (got.vectors[1] == 0).all()


def test_get_on_an_empty_store_finds_nobody(store):
    got = store.get([1, 2])
    assert got.version is None and got.found.tolist() == [False, False]


def test_get_of_an_older_version_reads_that_version(store):
    first = write_snapshot(store, [1], tag=0)
    write_snapshot(store, [1], tag=500)
    assert store.get([1]).vectors[0, 0, 0].item() == 501
    assert store.get([1], version=first.id).vectors[0, 0, 0].item() == 1


@pytest.mark.parametrize("damage, problem", [
    (lambda rec, other: rec[:-1] + bytes([rec[-1] ^ 1]), "checksum mismatch"),
    (lambda rec, other: bytes([rec[0] ^ 0x80]) + rec[1:], "checksum mismatch"),
    (lambda rec, other: rec[:-5], "31 bytes where a record has 36"),
    (lambda rec, other: other, "checksum mismatch"),            # another user's record
    (lambda rec, other: b"", "0 bytes where a record has 36"),
])
def test_a_damaged_record_warns_is_not_served_and_is_counted(store, damage, problem):
    manifest = write_snapshot(store, [1, 2, 3])
    recs = records_of(manifest, np.array([2, 3]))
    put_raw(store, manifest.id, 2, damage(bytes(recs[0]), bytes(recs[1])))
    with pytest.warns(CorruptRecordWarning, match=f"version {manifest.id}: the record of "
                                                  f"user 2 is corrupt \\({problem}"):
        got = store.get([1, 2, 3])
    assert got.found.tolist() == [True, False, True]
    assert (got.vectors[1] == 0).all()
    assert store.corrupt_records == 1


def test_scan_returns_every_record_ascending_in_batches(store):
    ids = np.array([9, 3, 7, 1, 5, 100, 2**40])
    write_snapshot(store, ids, shard_size=3)
    batches = list(store.scan(batch_size=3))
    assert [len(b) for b, _ in batches] == [3, 3, 1]
    scanned = np.concatenate([b for b, _ in batches])
    assert scanned.tolist() == sorted(ids.tolist())
    assert all(opened.found.all() for _, opened in batches)


# ------------------------------------------------------------------------------ staging
def test_staging_again_resumes_and_keeps_completed_shards(store_uri, store):
    from dv365.stores import open_store

    manifest = draft(shard_size=2)
    staged = store.stage(manifest)
    staged.write(np.array([1, 2]), records_of(manifest, np.array([1, 2])))
    staged.finish_shard(ShardDone(0, 2, 2 * manifest.record_size, 7, 2))
    staged.write(np.array([3]), records_of(manifest, np.array([3])))  # unfinished shard
    with open_store(store_uri) as again:
        assert [m.id for m in again.staged()] == [manifest.id]
        resumed = again.stage(manifest)
        assert resumed.completed_shards() == {0: ShardDone(0, 2, 2 * manifest.record_size,
                                                           7, 2)}


def test_staging_an_id_computed_from_other_inputs_is_refused(store):
    manifest = draft()
    store.stage(manifest)
    with pytest.raises(UsageError, match="computed from other inputs"):
        store.stage(dataclasses.replace(manifest, checkpoint_hash="other"))


def test_staging_a_published_id_is_refused(store):
    published = write_snapshot(store, [1])
    with pytest.raises(UsageError, match="published already"):
        store.stage(draft(snapshot_id=published.id))


def test_publish_refuses_a_count_that_does_not_match_and_changes_nothing(store):
    first = write_snapshot(store, [1, 2])
    manifest = draft()
    staged = store.stage(manifest)
    staged.write(np.array([1, 2, 3]), records_of(manifest, np.array([1, 2, 3])))
    staged.finish_shard(ShardDone(0, 2, 0, 0, 2))  # the shard says 2, the store holds 3
    done = manifest.completed(users=2, bytes=0, checksum=0, recomputed=2)
    with pytest.raises(StoreError, match="holds 3 records where 2 were written"):
        staged.publish(done)
    with pytest.raises(StoreError, match="shards hold 2 users, the manifest says 5"):
        staged.publish(dataclasses.replace(done, users=5))
    assert store.current_version() == first.id
    assert [m.id for m in store.staged()] == [manifest.id]


def test_abort_drops_the_staged_version(store):
    manifest = draft()
    staged = store.stage(manifest)
    staged.write(np.array([1]), records_of(manifest, np.array([1])))
    staged.abort()
    assert store.staged() == [] and store._count(manifest.id) == 0
