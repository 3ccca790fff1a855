"""The LMDB store: layout, keys, map growth, refusals, readers in other processes."""

from __future__ import annotations

import subprocess
import sys

import lmdb
import numpy as np
import pytest

from dv365.stores import open_store
from dv365.stores.base import StoreError
from dv365.stores.lmdb_store import LMDB_ENGINE, LmdbStore, user_keys
from tests.stores.snapshots import draft, records_of, write_snapshot


def test_the_scheme_opens_an_lmdb_store_with_the_pinned_engine(store):
    assert isinstance(store, LmdbStore)
    write_snapshot(store, [1, 2, 3])
    assert store._env.lib_version()[:2] == (0, 9)
    assert LMDB_ENGINE == 0


def test_keys_are_big_endian_so_they_sort_like_the_ids():
    ids = np.array([0, 1, 255, 256, 2**40, 2**63 - 1])
    keys = user_keys(ids)
    assert keys == sorted(keys)
    assert keys[3] == b"\0\0\0\0\0\0\1\0"


def test_each_version_is_its_own_database_beside_the_meta_database(store, tmp_path):
    first = write_snapshot(store, np.arange(10), created_ms=1)
    second = write_snapshot(store, np.arange(5), created_ms=2)
    store.close()
    env = lmdb.open(str(tmp_path / "store"), max_dbs=8, lib_version=LMDB_ENGINE)
    with env.begin() as txn:
        names = sorted(k for k, _ in txn.cursor())
        assert names == sorted([b"dv365-meta", f"v/{first.id}".encode(),
                                f"v/{second.id}".encode()])
        db = env.open_db(f"v/{second.id}".encode(), txn=txn, create=False)
        assert [k for k, _ in txn.cursor(db=db)] == user_keys(np.arange(5))
    env.close()


def test_unordered_and_overlapping_writes_replace_records(store):
    manifest = draft()
    staged = store.stage(manifest)
    staged.write(np.array([5, 1, 3]), records_of(manifest, np.array([5, 1, 3]), tag=0))
    staged.write(np.array([1, 2]), records_of(manifest, np.array([1, 2]), tag=100))
    staged.write(np.array([7, 9]), records_of(manifest, np.array([7, 9])))  # appended
    assert store._count(manifest.id) == 6
    raw = store._read_raw(manifest.id, np.array([1, 2, 3, 9, 4]))
    want = records_of(manifest, np.array([1, 2, 3, 9]), tag=0)
    want[:2] = records_of(manifest, np.array([1, 2]), tag=100)
    assert raw[:4] == [bytes(r) for r in want] and raw[4] is None


def test_a_negative_user_id_is_refused_on_write_and_not_found_on_read(store):
    manifest = draft()
    staged = store.stage(manifest)
    with pytest.raises(StoreError, match="user id -4 is negative"):
        staged.write(np.array([-4, 1]), records_of(manifest, np.array([-4, 1])))
    write_snapshot(store, [1, 2])
    assert store.get([-4, 1]).found.tolist() == [False, True]


def test_the_map_grows_when_a_write_does_not_fit(tmp_path):
    with LmdbStore_at(tmp_path, "") as store:
        store._map_size = 1 << 20
        store._environment(create=True).set_mapsize(1 << 20)
        write_snapshot(store, np.arange(20_000), dim=16, shard_size=20_000)
        assert store._env.info()["map_size"] > 1 << 20
        assert store.get([19_999]).found.all()


def test_a_full_store_during_publish_is_one_line_and_changes_nothing_current(tmp_path):
    with LmdbStore_at(tmp_path, "?map_size=2m") as store:
        first = write_snapshot(store, np.arange(100))
        with pytest.raises(StoreError, match=r"the store is full \(map_size=2,097,152") as err:
            write_snapshot(store, np.arange(50_000), dim=16, shard_size=50_000)
        assert "\n" not in str(err.value)
        assert store.current_version() == first.id
        assert store.get([99]).found.all()


def LmdbStore_at(tmp_path, query):
    return open_store(f"lmdb://{tmp_path / 'store'}{query}")


@pytest.mark.parametrize("make, message", [
    (lambda p: (p / "x").write_text("not a folder"), "is a file, not an LMDB store folder"),
    (lambda p: ((p / "x").mkdir(), (p / "x" / "notes.txt").write_text("hi")),
     "holds files but no LMDB environment"),
    (lambda p: ((p / "x").mkdir(), (p / "x" / "data.mdb").write_bytes(b"garbage" * 1000)),
     "cannot open the LMDB environment"),
])
def test_a_path_that_is_not_a_store_is_a_one_line_store_error(tmp_path, make, message):
    make(tmp_path)
    with pytest.raises(StoreError, match=message) as err:
        open_store(f"lmdb://{tmp_path / 'x'}").versions()
    assert "\n" not in str(err.value)


def test_a_creation_killed_after_the_lock_file_left_no_store_and_a_new_one_can_be_made(
        tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "lock.mdb").write_bytes(b"\0" * 8192)  # LMDB writes it first
    with open_store(f"lmdb://{tmp_path / 'x'}") as store:
        assert store.versions() == []
        write_snapshot(store, np.arange(10), dim=4, shard_size=10)
        assert store.get([3]).found.all()


def test_an_lmdb_environment_of_another_program_is_refused(tmp_path):
    env = lmdb.open(str(tmp_path / "other"), lib_version=LMDB_ENGINE)
    with env.begin(write=True) as txn:
        txn.put(b"k", b"v")
    env.close()
    with pytest.raises(StoreError, match="an LMDB environment but not a dv365 store"):
        open_store(f"lmdb://{tmp_path / 'other'}").current_version()


def test_a_missing_folder_reads_as_empty_and_a_missing_parent_is_refused(tmp_path):
    missing = open_store(f"lmdb://{tmp_path / 'new'}")
    assert missing.current_version() is None and missing.versions() == []
    assert not (tmp_path / "new").exists()  # reading creates nothing
    with pytest.raises(StoreError, match="does not exist"):
        open_store(f"lmdb://{tmp_path / 'no' / 'such'}").stage(draft())


def test_two_stores_of_one_folder_in_one_process_share_the_environment(store_uri):
    with open_store(store_uri) as a, open_store(store_uri) as b:
        write_snapshot(a, [1, 2])
        assert b.get([2]).found.all()
    with open_store(store_uri) as c:
        assert c.get([1]).found.all()


READER = """
import sys, numpy as np
from dv365.stores import open_store
store = open_store(sys.argv[1])
print(store.current_version(), int(store.get(np.arange(1000)).found.sum()))
"""


def test_another_process_reads_while_this_one_holds_a_write_transaction(store, store_uri):
    first = write_snapshot(store, np.arange(1000))
    manifest = draft()
    staged = store.stage(manifest)

    def work(txn):  # a reader elsewhere never waits for the writer
        out = subprocess.run([sys.executable, "-c", READER, store_uri], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout.split()

    assert store._write(work) == [first.id, "1000"]
    assert staged.completed_shards() == {}


def test_a_map_size_that_is_not_a_size_is_a_usage_error(tmp_path):
    from dv365.errors import UsageError

    with pytest.raises(UsageError, match="map_size='lots' is not a size"):
        open_store(f"lmdb://{tmp_path / 's'}?map_size=lots")
    assert open_store(f"lmdb://{tmp_path / 's'}?map_size=64m")._map_size == 64 << 20


def test_a_folder_that_cannot_be_made_is_a_one_line_store_error():
    # /proc takes no new folders, even for root
    with pytest.raises(StoreError, match="cannot open the LMDB environment") as err:
        open_store("lmdb:///proc/dv365-store").stage(draft())
    assert "\n" not in str(err.value)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 4 MiB file system (tmpfs), where this process may mount one."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                          capture_output=True)
    if made.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_during_publish_is_one_line_and_changes_nothing_current(tiny_disk):
    with open_store(f"lmdb://{tiny_disk / 'store'}") as store:
        first = write_snapshot(store, np.arange(100))
        with pytest.raises(StoreError, match="the disk is full; nothing was changed") as err:
            write_snapshot(store, np.arange(50_000), dim=16, shard_size=10_000)
        assert "\n" not in str(err.value)
        assert store.current_version() == first.id
        assert store.get([99]).found.all()
