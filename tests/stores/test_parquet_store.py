"""parquet://PATH: every version a Parquet dataset, published by one rename and one state
update, readable by dv365 and by plain pyarrow; broken files are one-line errors."""

import json
import multiprocessing
import random
import threading
import time
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import torch

from dv365.errors import UsageError
from dv365.export.codecs import codec_named
from dv365.export.manifest import Manifest
from dv365.export.records import (combine_checksums, record_size, records_checksum,
                                  seal)
from dv365.export.sink import ShardDone
from dv365.stores import open_store
from dv365.stores.base import StoreError
from dv365.stores.parquet_store import ParquetStore, part_name
from dv365.stores.uri import parse_store_uri

ROWS, DIM = 2, 4


def _store(root, **options) -> ParquetStore:
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return open_store(f"parquet://{root}" + (f"?{query}" if query else ""))


def _draft(version, codec="fp32", shard_size=100, created_ms=None):
    size = record_size(codec_named(codec).payload_size(ROWS, DIM))
    return Manifest(id=version, parent=None, checkpoint="ckpt.pt", checkpoint_hash="c0ffee",
                    spec_hash="5bec", data_key="da7a", at_ms=86_400_000, gap_ms=0,
                    codec=codec, rows=ROWS, dim=DIM, record_size=size, shard_size=shard_size,
                    created_ms=created_ms or int(time.time() * 1000))


def _vectors(version, ids):
    """Vectors for a batch of users: the same for the same version and batch (a resumed or
    redone shard writes the same records)."""
    rng = np.random.default_rng([zlib.crc32(version.encode()), *np.asarray(ids).tolist()[:1]])
    return torch.from_numpy(rng.standard_normal((len(ids), ROWS, DIM)).astype(np.float32))


def _records(draft, ids):
    if not len(ids):
        return np.zeros((0, draft.record_size), np.uint8)
    payloads = codec_named(draft.codec).encode(_vectors(draft.id, ids)).numpy()
    return seal(np.asarray(ids, dtype=np.int64), payloads)


def _shard_done(index, ids, records):
    return ShardDone(index, len(ids), records.nbytes, records_checksum(ids, records), len(ids))


def _write_shard(staged, index, ids, *, batch=37):
    ids = np.asarray(ids, dtype=np.int64)
    records = _records(staged.manifest, ids)
    for start in range(0, len(ids), batch):
        staged.write(ids[start:start + batch], records[start:start + batch])
    done = _shard_done(index, ids, records)
    staged.finish_shard(done)
    return done


def _publish(store, version, shards, *, codec="fp32", make_current=True, created_ms=None):
    """Stage ``version`` with ``shards`` (user id arrays, one a shard) and publish it."""
    draft = _draft(version, codec, created_ms=created_ms)
    staged = store.stage(draft)
    done = [_write_shard(staged, i, ids) for i, ids in enumerate(shards)]
    manifest = _completed(draft, done)
    staged.publish(manifest, make_current=make_current)
    return manifest


def _completed(draft, done):
    users = sum(d.users for d in done)
    return draft.completed(users=users, bytes=sum(d.bytes for d in done),
                           checksum=combine_checksums([d.checksum for d in done]),
                           recomputed=users)


def _scanned(store, version=None, batch_size=50):
    ids, checksum = [], 0
    for batch, opened in store.scan(version, batch_size=batch_size):
        assert opened.found.all() and len(batch) <= batch_size
        ids.append(batch)
        checksum = records_checksum(batch, opened.records, checksum)
    return (np.concatenate(ids) if ids else np.zeros(0, np.int64)), checksum


SHARDS = [np.arange(0, 300, 3), np.arange(300, 600, 3), np.arange(600, 900, 3)]


# ------------------------------------------------------------------------------ versions
def test_a_published_version_is_current_and_get_returns_vectors_and_found(tmp_path):
    store = _store(tmp_path / "wh", row_group_rows=16)
    manifest = _publish(store, "v1", SHARDS)
    assert store.current_version() == "v1" and store.manifest() == manifest
    asked = np.array([3, 4, 897, 600, -1, 10**12, 3])
    lookup = store.get(asked)
    assert lookup.version == "v1"
    assert lookup.found.tolist() == [True, False, True, True, False, False, True]
    for i, user in enumerate(asked):
        shard = next((s for s in SHARDS if user in s), None)
        if shard is None:
            assert torch.all(lookup.vectors[i] == 0)
        else:
            expected = _vectors("v1", shard)[np.searchsorted(shard, user)]
            assert torch.equal(lookup.vectors[i], expected)


def test_fp16_records_decode_to_the_fp16_rounding(tmp_path):
    store = _store(tmp_path / "wh")
    _publish(store, "v1", SHARDS[:1], codec="fp16")
    lookup = store.get(SHARDS[0])
    assert lookup.found.all()
    assert torch.equal(lookup.vectors, _vectors("v1", SHARDS[0]).half().float())


def test_an_empty_store_has_no_version_and_finds_nobody(tmp_path):
    store = _store(tmp_path / "missing")
    lookup = store.get([1, 2])
    assert lookup.version is None and not lookup.found.any()
    assert store.versions() == [] and store.staged() == []
    assert not (tmp_path / "missing").exists()  # reading creates nothing


def test_the_uri_must_name_a_folder_and_options_must_parse(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="is not a folder"):
        _store(tmp_path / "file")
    with pytest.raises(StoreError, match="row_group_rows='many' is not a number"):
        _store(tmp_path / "wh", row_group_rows="many")


def test_promote_rollback_and_versions(tmp_path):
    store = _store(tmp_path / "wh")
    _publish(store, "v1", SHARDS[:1], created_ms=1)
    _publish(store, "v2", SHARDS[1:2], created_ms=2)
    _publish(store, "v3", SHARDS[2:], created_ms=3, make_current=False)
    assert store.current_version() == "v2"
    assert [(i.manifest.id, i.current) for i in store.versions()] == [
        ("v1", False), ("v2", True), ("v3", False)]
    assert store.rollback() == "v1" and store.get([0]).found.all()
    store.promote("v3")
    assert _store(tmp_path / "wh").current_version() == "v3"  # state.json, not memory
    assert store.get([0, 600]).found.tolist() == [False, True]


def test_gc_keeps_the_newest_the_current_and_pinned_versions(tmp_path):
    store = _store(tmp_path / "wh")
    for n in range(1, 6):
        _publish(store, f"v{n}", SHARDS[:1], created_ms=n)
    store.promote("v1")
    store.pin("v2")
    assert sorted(store.gc(keep=2, grace_s=0)) == ["v3"]
    assert sorted(p.name for p in (tmp_path / "wh" / "versions").iterdir()) == [
        "v1", "v2", "v4", "v5"]
    assert store.get([0]).found.all()


def test_a_staged_version_is_invisible_until_published_and_abort_removes_it(tmp_path):
    store = _store(tmp_path / "wh")
    _publish(store, "v1", SHARDS[:1])
    staged = store.stage(_draft("v2"))
    _write_shard(staged, 0, SHARDS[1])
    assert [m.id for m in store.staged()] == ["v2"]
    assert [i.manifest.id for i in store.versions()] == ["v1"]
    assert not store.get([300]).found.any()
    staged.abort()
    assert store.staged() == [] and not (tmp_path / "wh" / "staging" / "v2").exists()


def test_publishing_a_published_id_again_is_refused(tmp_path):
    store = _store(tmp_path / "wh")
    _publish(store, "v1", SHARDS[:1])
    with pytest.raises(UsageError, match="published already"):
        store.stage(_draft("v1"))


def test_publish_refuses_a_manifest_that_disagrees_with_the_shards(tmp_path):
    store = _store(tmp_path / "wh")
    draft = _draft("v1")
    staged = store.stage(draft)
    done = _write_shard(staged, 0, SHARDS[0])
    wrong = draft.completed(users=done.users + 1, bytes=done.bytes, checksum=done.checksum,
                            recomputed=0)
    with pytest.raises(StoreError, match="manifest says"):
        staged.publish(wrong)
    assert store.current_version() is None


def test_finish_shard_refuses_a_count_unlike_what_was_written(tmp_path):
    staged = _store(tmp_path / "wh").stage(_draft("v1"))
    ids = SHARDS[0]
    records = _records(staged.manifest, ids)
    staged.write(ids, records)
    with pytest.raises(StoreError, match="100 users written, the shard says 101"):
        staged.finish_shard(ShardDone(0, 101, 0, 0, 0))
    assert staged.completed_shards() == {}


def test_state_updates_from_many_writers_serialize(tmp_path):
    store = _store(tmp_path / "wh")

    def bump(state):
        state["pins"]["n"] = str(int(state["pins"].get("n", "0")) + 1)
        return state

    def worker():
        mine = _store(tmp_path / "wh")  # its own lock file handle, as another process has
        for _ in range(10):
            mine._update_state(bump)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store._load_state()["pins"]["n"] == "40"


def test_an_unreadable_state_document_is_a_one_line_error(tmp_path):
    store = _store(tmp_path / "wh")
    _publish(store, "v1", SHARDS[:1])
    (tmp_path / "wh" / "state.json").write_text("{not json")
    with pytest.raises(StoreError, match="state.json is unreadable") as err:
        store.current_version()
    assert "\n" not in str(err.value)


def test_what_killed_writers_left_is_swept_once_it_is_old(tmp_path):
    import os

    store = _store(tmp_path / "wh")
    _publish(store, "v1", SHARDS[:1])
    staged = store.stage(_draft("v2"))
    _write_shard(staged, 0, SHARDS[1])
    root = tmp_path / "wh"
    (root / "staging" / "v1").mkdir()  # a publish killed after its rename
    leftovers = [root / "staging" / ".v3.partial-12-0123abcd", root / "versions" /
                 ".v0.removed-0123abcd", root / "staging" / "v2" / ".pending-12-0123abcd",
                 root / "staging" / "v2" / "_shards" / ".1.json.tmp-12-0123abcd",
                 root / ".state.json.tmp-12-0123abcd"]
    for path in leftovers:
        path.mkdir() if "partial" in path.name or "removed" in path.name else path.touch()
    young = root / "staging" / "v2" / ".pending-13-0123abcd"
    young.touch()
    for path in leftovers:
        os.utime(path, (time.time() - 7200, time.time() - 7200))
    assert [m.id for m in store.staged()] == ["v2"]
    assert not any(p.exists() for p in leftovers) and young.exists()
    assert not (root / "staging" / "v1").exists() and store.get([0]).found.all()
    assert store.stage(_draft("v2")).completed_shards().keys() == {0}


def _publish_past_a_file_size_limit(root, out):
    """Publish with writes limited to 20 kB a file, as a full disk would stop them."""
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
    try:
        _publish(_store(root), "v2", [np.arange(3000)])
    except StoreError as exc:
        with open(out, "w") as f:
            f.write(str(exc))


def test_a_write_that_fails_like_a_full_disk_is_one_line_and_changes_nothing_current(
        tmp_path):
    store = _store(tmp_path / "wh")
    _publish(store, "v1", SHARDS[:1])
    out = tmp_path / "error.txt"
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    child = context.Process(target=_publish_past_a_file_size_limit,
                            args=(str(tmp_path / "wh"), str(out)))
    child.start()
    child.join()
    message = out.read_text()
    assert child.exitcode == 0 and "\n" not in message
    assert "cannot write version v2" in message and "File too large" in message
    assert store.current_version() == "v1" and store.get([0]).found.all()
    _publish(store, "v2", [np.arange(3000)])  # with room again, the same id publishes
    assert store.current_version() == "v2" and store.manifest().users == 3000


# ------------------------------------------------------------------------ resume, order
def test_a_resumed_version_keeps_completed_shards_and_a_redone_shard_has_no_duplicates(
        tmp_path):
    draft = _draft("v1")
    first = _store(tmp_path / "wh").stage(draft)
    done0 = _write_shard(first, 0, SHARDS[0])
    first.write(SHARDS[1][:40], _records(draft, SHARDS[1])[:40])  # killed before finishing

    store = _store(tmp_path / "wh")
    resumed = store.stage(draft)
    assert resumed.completed_shards() == {0: done0}
    ids = SHARDS[1]
    records = _records(draft, ids)
    resumed.write(ids, records)
    resumed.write(ids, records)  # the same users twice in one shard
    resumed.finish_shard(done1 := _shard_done(1, ids, records))
    manifest = _completed(draft, [done0, done1])
    assert store._count("v1") == 200
    resumed.publish(manifest)
    assert store._count("v1") == 200
    scanned, checksum = _scanned(store)
    assert np.array_equal(scanned, np.concatenate(SHARDS[:2]))
    assert checksum == manifest.checksum
    assert not (tmp_path / "wh" / "staging" / "v1").exists()


def test_an_empty_shard_is_a_part_without_rows(tmp_path):
    store = _store(tmp_path / "wh", row_group_rows=16)
    manifest = _publish(store, "v1", [SHARDS[0], np.zeros(0, np.int64), SHARDS[2]])
    assert store._count("v1") == manifest.users == 200
    assert pq.read_metadata(_part(tmp_path, shard=1)).num_rows == 0
    assert np.array_equal(_scanned(store)[0], np.concatenate([SHARDS[0], SHARDS[2]]))
    assert store.get([3, 300, 603]).found.tolist() == [True, False, True]


def test_a_user_written_twice_keeps_its_last_record(tmp_path):
    store = _store(tmp_path / "wh")
    draft = _draft("v1")
    staged = store.stage(draft)
    ids = np.array([5, 1, 3], dtype=np.int64)
    old = _records(draft, ids)
    new = _records(_draft("other"), ids[:1])  # another record of user 5
    staged.write(ids, old)
    staged.write(ids[:1], new)
    kept = np.concatenate([new, old[1:]])
    done = ShardDone(0, 3, kept.nbytes, records_checksum(ids, kept), 3)
    staged.finish_shard(done)
    staged.publish(_completed(draft, [done]))
    opened = store.read([5, 1, 3])
    assert opened.found.all() and np.array_equal(opened.records, kept)


def test_a_writer_may_reuse_its_arrays_after_write_returns(tmp_path):
    store = _store(tmp_path / "wh", row_group_rows=64)
    draft = _draft("v1")
    staged = store.stage(draft)
    ids = SHARDS[0].copy()
    records = _records(draft, ids)
    kept = records.copy()
    for batch in (slice(0, 10), slice(10, 100)):  # the first stays buffered a while
        staged.write(ids[batch], records[batch])
        records[batch] = 0
        ids[batch] = -1
    done = ShardDone(0, 100, kept.nbytes, records_checksum(SHARDS[0], kept), 100)
    staged.finish_shard(done)
    staged.publish(_completed(draft, [done]))
    assert np.array_equal(store.read(SHARDS[0]).records, kept)


@pytest.mark.parametrize("layout", ["descending shards", "interleaved shards"])
def test_scan_is_ascending_whatever_the_shards_user_ranges(tmp_path, layout):
    users = np.arange(1000, dtype=np.int64) * 7
    if layout == "descending shards":
        shards = [users[600:], users[300:600], users[:300]]
    else:  # every shard spans the whole range (users assigned by hash)
        shards = [users[users % 3 == k] for k in range(3)]
        shards[1] = shards[1][::-1]  # and one written in descending order
    store = _store(tmp_path / "wh", row_group_rows=32)
    manifest = _publish(store, "v1", shards)
    for batch_size in (1, 64, 5000):
        scanned, checksum = _scanned(store, batch_size=batch_size)
        assert np.array_equal(scanned, users) and checksum == manifest.checksum
    asked = np.array([7 * 999, 0, 8, 7 * 500, 7 * 501])
    assert store.get(asked).found.tolist() == [True, True, False, True, True]


def test_a_lookup_reads_only_the_row_groups_that_can_hold_its_users(tmp_path, monkeypatch):
    store = _store(tmp_path / "wh", row_group_rows=10)
    _publish(store, "v1", SHARDS)  # 30 row groups
    read = []
    original = ParquetStore._read_group
    monkeypatch.setattr(ParquetStore, "_read_group", lambda self, path, part, group, column: (
        read.append((path.name, group, column)) or original(self, path, part, group, column)))
    assert store.get([303, 304]).found.tolist() == [True, False]
    assert read == [(part_name(1), 0, "user_id"), (part_name(1), 0, "record")]


# ---------------------------------------------------------------------------- integrity
def _part(tmp_path, version="v1", shard=1):
    return tmp_path / "wh" / "versions" / version / part_name(shard)


def _record_page_offset(path):
    column = pq.read_metadata(path).row_group(0).column(1)
    return column.data_page_offset + 40  # inside the first page's values


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "not parquet"])
def test_a_broken_part_file_is_a_one_line_error_naming_it(tmp_path, damage):
    store = _store(tmp_path / "wh", row_group_rows=16)
    _publish(store, "v1", SHARDS)
    path = _part(tmp_path)
    data = bytearray(path.read_bytes())
    if damage == "flipped byte":
        data[_record_page_offset(path)] ^= 0x01
    elif damage == "truncated":
        data = data[:len(data) // 2]
    else:
        data = b"user_id,record\n303,abc\n" * 10
    path.write_bytes(bytes(data))
    fresh = _store(tmp_path / "wh")
    for attempt in (lambda: fresh.get([303]), lambda: list(fresh.scan())):
        with pytest.raises(StoreError) as err:
            attempt()
        message = str(err.value)
        assert "\n" not in message and "versions/v1/part-00001.parquet" in message
        if damage == "flipped byte":
            assert "row group 0, column 'record'" in message and "CRC" in message
    if damage == "flipped byte":  # the other row groups and parts still serve
        assert fresh.get([3, 351]).found.all()


def test_no_flipped_byte_anywhere_in_a_part_serves_a_wrong_value(tmp_path):
    store = _store(tmp_path / "wh", row_group_rows=16)
    _publish(store, "v1", SHARDS[:1])
    path = _part(tmp_path, shard=0)
    original = path.read_bytes()
    asked = np.arange(-1, 301)
    want = store.get(asked)
    outcomes = set()
    for offset in range(0, len(original), 29):
        damaged = bytearray(original)
        damaged[offset] ^= 0xFF
        path.write_bytes(bytes(damaged))
        try:
            got = _store(tmp_path / "wh").get(asked)
        except StoreError as exc:
            assert "\n" not in str(exc)
            outcomes.add("error")
            continue
        assert torch.equal(got.found, want.found) and torch.equal(got.vectors, want.vectors)
        outcomes.add("unharmed")  # a byte no reader uses (key-value metadata, padding)
    assert outcomes == {"error", "unharmed"}


def test_a_part_file_removed_from_a_version_is_an_error_not_missing_users(tmp_path):
    store = _store(tmp_path / "wh")
    _publish(store, "v1", SHARDS)
    _part(tmp_path).unlink()
    fresh = _store(tmp_path / "wh")
    with pytest.raises(StoreError, match="versions/v1/part-00001.parquet is missing"):
        fresh.get([3, 303])
    with pytest.raises(StoreError, match="part-00001.parquet is missing"):
        list(fresh.scan())


@pytest.mark.parametrize("name, offset", [("_row_groups.parquet", 30), ("_manifest.json", 0),
                                          ("_manifest.json", 40)])
def test_a_damaged_index_or_manifest_is_a_one_line_error(tmp_path, name, offset):
    store = _store(tmp_path / "wh")
    _publish(store, "v1", SHARDS)
    path = tmp_path / "wh" / "versions" / "v1" / name
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=f"versions/v1/{name}") as err:
        _store(tmp_path / "wh").get([3])
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------ the warehouse view
def test_a_version_is_a_plain_parquet_dataset(tmp_path):
    store = _store(tmp_path / "wh", row_group_rows=16)
    manifest = _publish(store, "v1", SHARDS)
    _publish(store, "v2", SHARDS[:1])
    store.stage(_draft("v3"))  # staged: not part of the warehouse view
    table = ds.dataset(tmp_path / "wh" / "versions" / "v1", format="parquet").to_table()
    assert table.schema.names == ["user_id", "record", "checksum"]
    assert table.num_rows == manifest.users
    assert sorted(table.column("user_id").to_pylist()) == np.concatenate(SHARDS).tolist()
    records = table.column("record").to_pylist()
    assert all(len(r) == manifest.record_size for r in records)
    assert table.column("checksum").to_pylist() == [
        int.from_bytes(r[-4:], "little") for r in records]
    one = ds.dataset(tmp_path / "wh" / "versions" / "v1", format="parquet").to_table(
        filter=ds.field("user_id") == 603)
    assert one.column("record").to_pylist() == [bytes(store.read([603], version="v1").records[0])]
    everything = ds.dataset(tmp_path / "wh" / "versions", format="parquet",
                            partitioning=ds.partitioning(pa.schema([("version", pa.string())])))
    counts = everything.to_table(columns=["version"]).group_by("version").aggregate(
        [([], "count_all")])
    assert sorted(zip(counts["version"].to_pylist(), counts["count_all"].to_pylist())) == [
        ("v1", 300), ("v2", 100)]


def test_parts_declare_their_order_and_carry_page_checksums(tmp_path):
    store = _store(tmp_path / "wh", row_group_rows=16)
    _publish(store, "v1", SHARDS[:1])
    meta = pq.read_metadata(_part(tmp_path, shard=0))
    assert meta.num_row_groups == 7
    assert meta.row_group(0).sorting_columns == (pq.SortingColumn(0),)
    stats = [meta.row_group(g).column(0).statistics for g in range(meta.num_row_groups)]
    assert [(s.min, s.max) for s in stats[:2]] == [(0, 45), (48, 93)]


# ----------------------------------------------------------------------------- kills
KILL_SHARDS = 3
KILL_USERS = 200


def _kill_victim(root):
    """Publish one version (resuming a staged one if there is), as an export would."""
    store = ParquetStore(parse_store_uri(f"parquet://{root}?row_group_rows=32"))
    staged = store.staged()
    draft = staged[0] if staged else _draft(f"v{time.time_ns()}")
    writer = store.stage(draft)
    done = writer.completed_shards()
    for shard in range(KILL_SHARDS):
        if shard not in done:
            ids = np.arange(shard * KILL_USERS, (shard + 1) * KILL_USERS) * 5 + 1
            done[shard] = _write_shard(writer, shard, ids, batch=50)
    writer.publish(_completed(draft, list(done.values())))


def _assert_current_is_complete(root):
    state = json.loads((root / "state.json").read_text())
    store = ParquetStore(parse_store_uri(f"parquet://{root}"))
    manifest = store.manifest(state["current"])
    scanned, checksum = _scanned(store, batch_size=500)
    assert len(scanned) == manifest.users == KILL_SHARDS * KILL_USERS
    assert checksum == manifest.checksum
    return state["current"]


@pytest.mark.slow
def test_sigkilled_publishers_never_leave_an_incomplete_current_version(tmp_path):
    root = tmp_path / "wh"
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])

    def run(kill_after=None):
        process = context.Process(target=_kill_victim, args=(str(root),))
        started = time.perf_counter()
        process.start()
        process.join(kill_after)
        if process.is_alive():
            process.kill()
            process.join()
        return process.exitcode, time.perf_counter() - started

    code, _ = run()  # the forkserver's start and the version every kill must keep
    assert code == 0
    code, duration = run()
    assert code == 0
    rng = random.Random(14)
    kills, previous = 0, _assert_current_is_complete(root)
    for _ in range(60):
        code, _ = run(rng.uniform(0.0, duration))
        current = _assert_current_is_complete(root)
        if code == -9:
            kills += 1
        else:
            assert code == 0 and current != previous
        previous = current
        if kills >= 10:
            break
    assert kills >= 10
    code, _ = run()
    assert code == 0 and _assert_current_is_complete(root) != previous
    assert _store(root).staged() == []
