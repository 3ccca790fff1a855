"""The timeline store: per-user CSR arrays equal a plain group-by, cutoff queries equal a
brute-force filter, the cache is reused for the same content and rebuilt for changed content."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dv365.data.schema import DEFAULT_VOCAB, TIMELINES
from dv365.data.schema import EVENT_COLUMN_DTYPES
from dv365.data.timeline import TimelineStore, content_key
from dv365.errors import DataError, NotFoundError
from tests.data.conftest import T0, good_events, with_value, write_events

PROPERTY = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

ACTIONS = DEFAULT_VOCAB["action"]


@st.composite
def event_rows(draw, max_rows=40):
    """Valid events as row dicts (external form) with many ties in user and time."""
    n = draw(st.integers(0, max_rows))
    rows = []
    for _ in range(n):
        implicit = draw(st.booleans())
        media_type = draw(st.sampled_from(DEFAULT_VOCAB["media_type"]))
        rows.append({
            # 2**62 with -7 spans too many bits for the combined sort key: the lexsort path
            "user_id": draw(st.sampled_from([-7, 0, 3, 4, 2**40, 2**62])),
            "ts": T0 + draw(st.integers(0, 6)),
            "timeline": TIMELINES[1] if implicit else TIMELINES[0],
            "media_id": draw(st.integers(0, 2**62)),
            "author_id": draw(st.integers(-5, 5)),
            "topic_id": draw(st.integers(0, 3)),
            "media_type": media_type,
            "surface": draw(st.sampled_from(DEFAULT_VOCAB["surface"])),
            "action": None if implicit else draw(st.sampled_from(ACTIONS)),
            "video_duration": (draw(st.floats(0, 1000, width=32)) if media_type == "video"
                               else None),
            "dwell_time": (draw(st.floats(0, 1000, width=32)) if implicit
                           else draw(st.none() | st.floats(0, 10, width=32))),
        })
    return rows


def _write_rows(folder: Path, rows: list[dict], cuts: list[int]) -> None:
    """Rows in this order, split into files at ``cuts`` (file names keep that order)."""
    bounds = [0, *sorted(cuts), len(rows)]
    for k in range(len(bounds) - 1):
        part = rows[bounds[k]:bounds[k + 1]]
        cols = {name: [r[name] for r in part] for name in rows[0]} if part else None
        if cols is None:
            continue
        write_events(folder / f"f{k:03d}", cols)  # one sub-folder per file: part-00000.parquet
    if not rows or not any(folder.rglob("*.parquet")):
        write_events(folder / "f000", {name: [] for name in good_events(1)})


def _internal(row: dict, name: str):
    """A row's value in the store's internal form (codes, NaN for null)."""
    v = row[name]
    if name == "timeline":
        return TIMELINES.index(v)
    if name in DEFAULT_VOCAB:
        return -1 if v is None else DEFAULT_VOCAB[name].index(v)
    if name in ("video_duration", "dwell_time"):
        return np.float32(np.nan if v is None else v)
    return v


def _expected(rows: list[dict]) -> dict[int, list[dict]]:
    """The plain group-by: each user's rows sorted by ts, ties in source order."""
    groups: dict[int, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["user_id"], []).append(row)
    return {u: sorted(g, key=lambda r: r["ts"]) for u, g in sorted(groups.items())}


def _assert_store_equals(store: TimelineStore, rows: list[dict]) -> None:
    expected = _expected(rows)
    assert store.user_ids.tolist() == list(expected)
    assert store.num_events == len(rows)
    for u, (user, group) in enumerate(expected.items()):
        events = store.user_events(u)
        assert store.user_index(user) == u
        for name, dtype in EVENT_COLUMN_DTYPES.items():
            got = events[name]
            assert got.dtype == dtype
            want = np.array([_internal(r, name) for r in group], dtype=dtype)
            np.testing.assert_array_equal(got, want, err_msg=f"user {user} column {name}")


@PROPERTY
@given(rows=event_rows(), data=st.data())
def test_store_equals_a_plain_group_by(rows, data):
    order = data.draw(st.permutations(range(len(rows))))
    rows = [rows[i] for i in order]
    cuts = data.draw(st.lists(st.integers(0, len(rows)), max_size=3))
    with tempfile.TemporaryDirectory() as tmp:
        _write_rows(Path(tmp) / "events", rows, cuts)
        store = TimelineStore.open(Path(tmp) / "events", cache_dir=Path(tmp) / "cache")
        _assert_store_equals(store, rows)
        assert store.offsets[0] == 0 and np.all(np.diff(store.offsets) > 0)


@PROPERTY
@given(rows=event_rows(max_rows=30), data=st.data())
def test_cutoff_queries_equal_a_brute_force_filter(rows, data):
    with tempfile.TemporaryDirectory() as tmp:
        _write_rows(Path(tmp) / "events", rows, [])
        store = TimelineStore.open(Path(tmp) / "events", cache_dir=Path(tmp) / "cache")
        if store.num_users == 0:
            return
        users = data.draw(st.lists(st.integers(0, store.num_users - 1), min_size=1, max_size=8))
        cutoffs = data.draw(st.lists(st.integers(T0 - 1, T0 + 8), min_size=len(users),
                                     max_size=len(users)))
        ends = store.ends_before(np.array(users), np.array(cutoffs))
        for u, cutoff, end in zip(users, cutoffs, ends):
            start, stop = store.range_before(u, cutoff)
            user = int(store.user_ids[u])
            want = sum(1 for r in rows if r["user_id"] == user and r["ts"] < cutoff)
            assert (start, stop) == (store.offsets[u], store.offsets[u] + want)
            assert end == stop
            assert np.all(store.ts[start:stop] < cutoff)
            assert np.all(store.ts[stop:store.offsets[u + 1]] >= cutoff)


@PROPERTY
@given(rows=event_rows(), data=st.data())
def test_input_order_does_not_matter_when_times_differ(rows, data):
    # Make (user, ts) unique: then no tie rule applies and any order gives the same store.
    seen = set()
    rows = [r for r in rows if (r["user_id"], r["ts"]) not in seen
            and not seen.add((r["user_id"], r["ts"]))]
    shuffled = [rows[i] for i in data.draw(st.permutations(range(len(rows))))]
    cuts = data.draw(st.lists(st.integers(0, len(rows)), max_size=3))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _write_rows(tmp / "a", rows, [])
        _write_rows(tmp / "b", shuffled, cuts)
        a = TimelineStore.open(tmp / "a", cache_dir=tmp / "cache")
        b = TimelineStore.open(tmp / "b", cache_dir=tmp / "cache")
        assert np.array_equal(a.offsets, b.offsets) and np.array_equal(a.user_ids, b.user_ids)
        for name in EVENT_COLUMN_DTYPES:
            np.testing.assert_array_equal(a.columns[name], b.columns[name])


@pytest.mark.parametrize("users", [(0, 50), (-(2**62), 2**62)])
def test_both_sort_paths_are_the_stable_lexicographic_order(users):
    from dv365.data.timeline import _stable_order

    rng = np.random.default_rng(3)
    user = rng.integers(*users, 5_000) if users[0] == 0 else rng.choice(np.array(users), 5_000)
    ts = T0 + rng.integers(0, 40, 5_000)  # many ties
    np.testing.assert_array_equal(_stable_order(user, ts), np.lexsort((ts, user)))


def test_ties_keep_source_order_across_files(tmp_path):
    cols = good_events(6, seed=0, users=1)
    cols["ts"] = [T0] * 6
    cols["media_id"] = [10, 11, 12, 13, 14, 15]
    write_events(tmp_path / "ev", cols, files=3)
    # File names decide source order, not creation order: rename so part-00002 comes first.
    (tmp_path / "ev" / "part-00002.parquet").rename(tmp_path / "ev" / "a-first.parquet")
    store = TimelineStore.open(tmp_path / "ev", cache_dir=tmp_path / "cache")
    assert store.media_id.tolist() == [14, 15, 10, 11, 12, 13]


def test_sorted_input_is_not_sorted_again(tmp_path):
    import json

    cols = good_events(300, seed=5)
    write_events(tmp_path / "sorted", cols, files=3)
    store = TimelineStore.open(tmp_path / "sorted", cache_dir=tmp_path / "cache")
    assert json.loads((store.path / "manifest.json").read_text())["sorted_on_read"] is True
    flipped = {k: v[::-1] for k, v in cols.items()}
    write_events(tmp_path / "flipped", flipped, files=3)
    other = TimelineStore.open(tmp_path / "flipped", cache_dir=tmp_path / "cache")
    assert json.loads((other.path / "manifest.json").read_text())["sorted_on_read"] is False
    np.testing.assert_array_equal(store.ts, other.ts)


def test_cache_is_reused_and_memory_mapped(tmp_path):
    src = write_events(tmp_path / "data" / "events", good_events(200, seed=1), files=2)
    cache = tmp_path / "cache"
    first = TimelineStore.open(tmp_path / "data", cache_dir=cache)  # a data folder works too
    stamp = (first.path / "manifest.json").stat().st_mtime_ns
    again = TimelineStore.open(src, cache_dir=cache)
    assert again.path == first.path
    assert (again.path / "manifest.json").stat().st_mtime_ns == stamp  # not rebuilt
    assert isinstance(again.ts, np.memmap) and not again.ts.flags.writeable
    entries = [p for p in cache.iterdir() if p.name != "digests"]
    assert entries == [first.path]  # no temporary build folders left behind
    # A copy of the same bytes elsewhere has the same content key.
    shutil.copytree(src, tmp_path / "copy")
    assert TimelineStore.open(tmp_path / "copy", cache_dir=cache).path == first.path
    loaded = TimelineStore.load(first.path)
    np.testing.assert_array_equal(loaded.offsets, first.offsets)
    rebuilt = TimelineStore.open(src, cache_dir=cache, rebuild=True)
    assert rebuilt.path == first.path
    assert (rebuilt.path / "manifest.json").stat().st_mtime_ns != stamp
    assert sorted(p.name for p in cache.iterdir()) == sorted(["digests", first.path.name])


def test_changed_source_is_rebuilt(tmp_path):
    cols = good_events(200, seed=1)
    src = write_events(tmp_path / "ev", cols, files=2)
    cache = tmp_path / "cache"
    before = TimelineStore.open(src, cache_dir=cache)
    old_key = content_key(src, cache)
    write_events(src, with_value(cols, "media_id", 150, 999_999), files=2)
    assert content_key(src, cache) != old_key
    after = TimelineStore.open(src, cache_dir=cache)
    assert after.path != before.path
    assert 999_999 in after.media_id and 999_999 not in before.media_id


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DV365_CACHE_DIR", str(tmp_path / "envcache"))
    store = TimelineStore.open(write_events(tmp_path / "ev", good_events(20)))
    assert store.path.parent == tmp_path / "envcache"


def test_broken_cache_entry_is_rebuilt(tmp_path):
    src = write_events(tmp_path / "ev", good_events(50))
    store = TimelineStore.open(src, cache_dir=tmp_path / "cache")
    (store.path / "ts.npy").write_bytes(b"garbage")
    again = TimelineStore.open(src, cache_dir=tmp_path / "cache")
    assert again.ts.tolist() == good_events(50)["ts"]
    np.testing.assert_array_equal(again.offsets, store.offsets)


def test_bad_rows_fail_the_build_and_leave_no_cache(tmp_path):
    cols = with_value(good_events(100), "surface", 70, "reel")
    src = write_events(tmp_path / "ev", cols)
    with pytest.raises(DataError, match="did you mean 'reels'") as err:
        TimelineStore.open(src, cache_dir=tmp_path / "cache")
    assert err.value.where == f"{src}/part-00000.parquet: row 70: column 'surface'"
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["digests"]


def test_user_lookups(tmp_path):
    store = TimelineStore.open(write_events(tmp_path / "ev", good_events(100, users=4)),
                               cache_dir=tmp_path / "cache")
    assert store.user_ids.tolist() == [1, 2, 3, 4]
    assert store.user_indices(np.array([4, 1, 1])).tolist() == [3, 0, 0]
    assert store.user_indices(np.array([4, 99, 0]), missing=-1).tolist() == [3, -1, -1]
    with pytest.raises(NotFoundError) as err:
        store.user_index(99)
    assert err.value.render() == (f"{tmp_path / 'ev'}: error: user 99 is not in the timeline "
                                  f"store (the store holds 4 users with ids 1..4)")
    with pytest.raises(NotFoundError, match="user 7 is not"):
        store.user_indices(np.array([1, 7]))
    with pytest.raises(IndexError):
        store.ends_before(np.array([4]), 0)
    assert store.ends_before(np.array([0, 3]), T0 + 10**9).tolist() == store.offsets[[1, 4]].tolist()
    assert store.ends_before(np.array([0, 3]), 0).tolist() == store.offsets[[0, 3]].tolist()


def test_empty_dataset(tmp_path):
    src = write_events(tmp_path / "ev", {name: [] for name in good_events(1)})
    store = TimelineStore.open(src, cache_dir=tmp_path / "cache")
    assert store.num_users == 0 and store.num_events == 0 and store.offsets.tolist() == [0]
    with pytest.raises(NotFoundError, match="holds no users"):
        store.user_index(1)


def test_a_user_with_70000_events(tmp_path):
    rng = np.random.default_rng(7)
    n_big, n_small = 70_000, 5_000
    cols = good_events(n_big + n_small, seed=7, users=1)
    users = np.r_[np.full(n_big, 42), rng.integers(1, 40, n_small)]
    ts = T0 + rng.integers(0, 365 * 86_400_000, users.size)
    perm = rng.permutation(users.size)  # unsorted input: the stable lexsort path
    cols["user_id"], cols["ts"] = users[perm].tolist(), ts[perm].tolist()
    src = write_events(tmp_path / "ev", cols, files=4)
    store = TimelineStore.open(src, cache_dir=tmp_path / "cache")
    u = store.user_index(42)
    assert store.history_lengths()[u] == n_big
    big_ts = np.sort(ts[users == 42])
    np.testing.assert_array_equal(store.user_events(u)["ts"], big_ts)
    cutoffs = T0 + rng.integers(0, 366 * 86_400_000, 1000)
    ends = store.ends_before(np.full(1000, u), cutoffs)
    np.testing.assert_array_equal(ends - store.offsets[u],
                                  np.searchsorted(big_ts, cutoffs, side="left"))
    gap = 24 * 3600 * 1000
    request = int(big_ts[35_000])
    start, end = store.range_before(u, request - gap)
    assert end - start == np.count_nonzero(big_ts < request - gap)


def test_env_var_is_not_required(monkeypatch):
    monkeypatch.delenv("DV365_CACHE_DIR", raising=False)
    from dv365.data.timeline import default_cache_dir

    assert default_cache_dir() == Path(os.path.expanduser("~")) / ".cache" / "dv365" / "timelines"


# ------------------------------------------------------------------ a corrupted cache entry

def _arrays(store: TimelineStore) -> dict[str, np.ndarray]:
    """Copies of everything a store serves (safe to keep after its files change)."""
    out = {"user_ids": np.array(store.user_ids), "offsets": np.array(store.offsets)}
    out.update({name: np.array(col) for name, col in store.columns.items()})
    return out


def _assert_serves(store: TimelineStore, arrays: dict[str, np.ndarray], meta) -> None:
    got = _arrays(store)
    assert sorted(got) == sorted(arrays)
    for name, want in arrays.items():
        np.testing.assert_array_equal(got[name], want, err_msg=name)
    assert store.meta == meta


def _edit_array(entry: Path, name: str, edit) -> None:
    """Change a cached array's body in place (its header stays valid)."""
    arr = np.load(entry / f"{name}.npy", mmap_mode="r+")
    edit(arr)
    arr.flush()
    del arr


def _swap(i: int, j: int):
    def edit(arr):
        arr[i], arr[j] = arr[j].copy(), arr[i].copy()
    return edit


def _set(i: int, value):
    def edit(arr):
        arr[i] = value
    return edit


def _reverse_surfaces(entry: Path) -> None:
    import json

    manifest = json.loads((entry / "manifest.json").read_text())
    manifest["meta"]["vocab"]["surface"].reverse()
    (entry / "manifest.json").write_text(json.dumps(manifest))


def _drop_digests(entry: Path) -> None:
    import json

    manifest = json.loads((entry / "manifest.json").read_text())
    del manifest["digests"]
    (entry / "manifest.json").write_text(json.dumps(manifest))


def _npy(name, edit):
    return lambda entry: _edit_array(entry, name, edit)


CORRUPTIONS = {
    "ts shifted": (_npy("ts", lambda a: a.__iadd__(1_000)), "ts.npy does not match its digest"),
    "media_id + 1": (_npy("media_id", lambda a: a.__iadd__(1)),
                     "media_id.npy does not match its digest"),
    "dwell_time zeroed": (_npy("dwell_time", lambda a: a.fill(0)),
                          "dwell_time.npy does not match its digest"),
    "offsets out of bounds": (_npy("offsets", _set(2, 10_000)),
                              "offsets.npy points outside the 200 events"),
    "offsets negative": (_npy("offsets", _set(1, -3)),
                         "offsets.npy points outside the 200 events"),
    "offsets decreasing": (_npy("offsets", _swap(1, 2)), "offsets.npy is not increasing"),
    "offsets ending early": (_npy("offsets", _set(-1, 150)),
                             "offsets.npy does not run from 0 to 200"),
    "user_ids swapped": (_npy("user_ids", _swap(0, 1)),
                         "user_ids.npy is not strictly ascending"),
    "vocabulary order": (_reverse_surfaces, "its metadata differs from the source's"),
    "no digests": (_drop_digests, "manifest.json lacks the arrays' digests"),
    "garbled header": (lambda entry: (entry / "topic_id.npy").write_bytes(b"garbage"),
                       "topic_id.npy is not a readable array"),
    "lost file": (lambda entry: (entry / "surface.npy").unlink(),
                  "surface.npy is not a readable array"),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_a_corrupted_cache_entry_is_rebuilt_never_served(tmp_path, capsys, corruption):
    corrupt, reason = CORRUPTIONS[corruption]
    src = write_events(tmp_path / "ev", good_events(200, seed=2), files=2)
    cache = tmp_path / "cache"
    first = TimelineStore.open(src, cache_dir=cache)
    want, meta = _arrays(first), first.meta
    TimelineStore.open(src, cache_dir=cache)  # verified once: its digests are remembered
    del first
    capsys.readouterr()
    corrupt(cache / content_key(src, cache))
    again = TimelineStore.open(src, cache_dir=cache)
    _assert_serves(again, want, meta)
    err = capsys.readouterr().err
    assert err == (f"note: {again.path}: the cached timeline store is broken ({reason}); "
                   "rebuilding it\n")
    # The rebuilt entry is whole again: the next open serves it as it is.
    TimelineStore.open(src, cache_dir=cache)
    assert capsys.readouterr().err == ""


def test_load_refuses_a_broken_entry(tmp_path):
    src = write_events(tmp_path / "ev", good_events(200, seed=2), files=2)
    store = TimelineStore.open(src, cache_dir=tmp_path / "cache")
    _edit_array(store.path, "media_id", lambda a: a.__iadd__(1))
    with pytest.raises(NotFoundError) as err:
        TimelineStore.load(store.path)
    assert err.value.hint == "media_id.npy does not match its digest"


def test_a_rebuilt_store_equals_the_original(tmp_path):
    import json

    src = write_events(tmp_path / "ev", good_events(300, seed=4), files=3)
    cache = tmp_path / "cache"
    first = TimelineStore.open(src, cache_dir=cache)
    want, meta = _arrays(first), first.meta
    manifest = json.loads((first.path / "manifest.json").read_text())
    rebuilt = TimelineStore.open(src, cache_dir=cache, rebuild=True)
    _assert_serves(rebuilt, want, meta)
    assert json.loads((rebuilt.path / "manifest.json").read_text())["digests"] == \
        manifest["digests"]
    # Built elsewhere from a copy: the same bytes.
    shutil.copytree(src, tmp_path / "copy")
    other = TimelineStore.open(tmp_path / "copy", cache_dir=tmp_path / "other")
    _assert_serves(other, want, meta)


def test_a_verified_digest_is_remembered_per_file_stat(tmp_path, monkeypatch):
    import time

    import dv365.data.timeline as timeline

    src = write_events(tmp_path / "ev", good_events(100, seed=3), files=1)
    cache = tmp_path / "cache"
    store = TimelineStore.open(src, cache_dir=cache)
    want, meta = _arrays(store), store.meta
    time.sleep(0.05)  # a later clock tick than the files': the notes are trusted
    TimelineStore.open(src, cache_dir=cache)
    time.sleep(0.05)

    def no_hashing(file):
        raise AssertionError(f"{file} was hashed again")

    monkeypatch.setattr(timeline, "_blake2b", no_hashing)
    _assert_serves(TimelineStore.open(src, cache_dir=cache), want, meta)
    monkeypatch.undo()
    # Rewritten in place with its size and mtime forged back: the stat still changed (ctime).
    ts = store.path / "ts.npy"
    st = ts.stat()
    _edit_array(store.path, "ts", lambda a: a.__iadd__(1))
    os.utime(ts, ns=(st.st_atime_ns, st.st_mtime_ns))
    _assert_serves(TimelineStore.open(src, cache_dir=cache), want, meta)


# ------------------------------------------------------------------ files appended to a dataset

def _manifest(store: TimelineStore) -> dict:
    import json

    return json.loads((store.path / "manifest.json").read_text())


@PROPERTY
@given(old=event_rows(), added=event_rows(), data=st.data())
def test_appended_files_extend_the_cached_store_as_a_full_build_would(old, added, data):
    """Files added after the cached ones (in source order) extend the cached arrays; ties,
    new users and events older than the cached ones land where a full build puts them."""
    old_cuts = data.draw(st.lists(st.integers(0, len(old)), max_size=2))
    new_cuts = data.draw(st.lists(st.integers(0, len(added)), max_size=2))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _write_rows(tmp / "events" / "a", old, old_cuts)
        cache = tmp / "cache"
        TimelineStore.open(tmp / "events", cache_dir=cache)
        if not added:  # an empty file still adds a file
            added_rows = []
            write_events(tmp / "events" / "b" / "f000", {name: [] for name in good_events(1)})
        else:
            added_rows = added
            _write_rows(tmp / "events" / "b", added, new_cuts)
        extended = TimelineStore.open(tmp / "events", cache_dir=cache)
        assert "extended_from" in _manifest(extended)
        full = TimelineStore.open(tmp / "events", cache_dir=tmp / "fresh")
        assert "extended_from" not in _manifest(full)
        _assert_serves(extended, _arrays(full), full.meta)
        assert _manifest(extended)["digests"] == _manifest(full)["digests"]
        _assert_store_equals(extended, old + added_rows)


def test_a_collected_day_extends_the_store_and_reads_only_the_new_file(tmp_path, monkeypatch):
    import dv365.data.validate as validate

    src = tmp_path / "events"
    write_events(src, good_events(400, seed=7), files=2)
    cache = tmp_path / "cache"
    before = TimelineStore.open(src, cache_dir=cache)
    day = good_events(120, seed=8, users=8)  # users 6-8 are new
    day["ts"] = [t + 20_000_000 for t in day["ts"]]
    landed = write_events(tmp_path / "landed", day)
    (landed / "part-00000.parquet").rename(src / "part-ext-20260102-1d-00000.parquet")
    read = []
    real = validate.DatasetReader._raw_batches
    monkeypatch.setattr(validate.DatasetReader, "_raw_batches",
                        lambda self, file: (read.append(file.name), real(self, file))[1])
    after = TimelineStore.open(src, cache_dir=cache)
    assert read == ["part-ext-20260102-1d-00000.parquet"]
    manifest = _manifest(after)
    assert manifest["extended_from"] == {"entry": before.path.name, "files": 2,
                                         "events": 400, "new_events": 120}
    assert manifest["files"] == 3 and after.num_events == 520
    assert after.user_ids.tolist() == [1, 2, 3, 4, 5, 6, 7, 8]
    # Opened again: the extended entry is served as it is; the old one stays for its content.
    again = TimelineStore.open(src, cache_dir=cache)
    assert again.path == after.path and (before.path / "manifest.json").exists()


def test_a_changed_or_inserted_file_is_a_full_build(tmp_path):
    src = tmp_path / "events"
    cols = good_events(300, seed=3)
    write_events(src, cols, files=2)
    cache = tmp_path / "cache"
    TimelineStore.open(src, cache_dir=cache)
    # A file that sorts before the cached ones: the cached files are not a prefix any more.
    extra = good_events(30, seed=9)
    (write_events(tmp_path / "x", extra) / "part-00000.parquet").rename(src / "a-first.parquet")
    inserted = TimelineStore.open(src, cache_dir=cache)
    assert "extended_from" not in _manifest(inserted)
    assert inserted.num_events == 330


def test_rebuild_ignores_a_cached_prefix(tmp_path):
    src = write_events(tmp_path / "events", good_events(200, seed=1), files=2)
    cache = tmp_path / "cache"
    TimelineStore.open(src, cache_dir=cache)
    (write_events(tmp_path / "x", good_events(20, seed=2)) / "part-00000.parquet").rename(
        src / "part-zz.parquet")
    assert "extended_from" not in _manifest(TimelineStore.open(src, cache_dir=cache,
                                                               rebuild=True))


def test_a_broken_cached_prefix_falls_back_to_a_full_build(tmp_path):
    src = write_events(tmp_path / "events", good_events(200, seed=1), files=2)
    cache = tmp_path / "cache"
    first = TimelineStore.open(src, cache_dir=cache)
    _edit_array(first.path, "media_id", lambda a: a.__iadd__(1))
    (write_events(tmp_path / "x", good_events(20, seed=2)) / "part-00000.parquet").rename(
        src / "part-zz.parquet")
    store = TimelineStore.open(src, cache_dir=cache)
    assert "extended_from" not in _manifest(store)
    full = TimelineStore.open(src, cache_dir=tmp_path / "fresh")
    _assert_serves(store, _arrays(full), full.meta)


def test_an_appended_file_with_bad_rows_or_other_metadata_fails_as_a_full_build(tmp_path):
    from dv365.data.schema import DatasetMeta

    src = write_events(tmp_path / "events", good_events(200, seed=1), files=2)
    cache = tmp_path / "cache"
    first = TimelineStore.open(src, cache_dir=cache)
    bad = with_value(good_events(50, seed=2), "surface", 7, "reel")
    (write_events(tmp_path / "x", bad) / "part-00000.parquet").rename(src / "part-zz.parquet")
    with pytest.raises(DataError, match="did you mean 'reels'") as err:
        TimelineStore.open(src, cache_dir=cache)
    assert err.value.where == f"{src}/part-zz.parquet: row 7: column 'surface'"
    assert sorted(p.name for p in cache.iterdir()) == sorted(["digests", first.path.name])
    vocab = {**DEFAULT_VOCAB, "surface": [*DEFAULT_VOCAB["surface"], "zz_surface"]}
    other = DatasetMeta(kind="events", vocab=vocab, source="test")
    (write_events(tmp_path / "y", good_events(50, seed=2), meta=other)
     / "part-00000.parquet").replace(src / "part-zz.parquet")
    with pytest.raises(DataError, match="metadata differs") as err:
        TimelineStore.open(src, cache_dir=cache)
    assert "part-zz.parquet" in err.value.where


def test_a_built_entry_remembers_its_arrays_digests(tmp_path):
    """The build hashed its arrays for the manifest; those digests are remembered per file
    stat at once, so the next open (another command) need not read the arrays again."""
    src = write_events(tmp_path / "events", good_events(100, seed=1))
    cache = tmp_path / "cache"
    store = TimelineStore.open(src, cache_dir=cache)
    remembered = sorted(p.read_text() for p in (cache / "digests").iterdir())
    arrays = sorted(_manifest(store)["digests"].values())
    assert all(d in remembered for d in arrays)
    assert len(remembered) == len(arrays) + 1  # and the source file's


def test_the_entries_a_store_was_extended_from_can_be_discarded(tmp_path):
    from dv365.data.timeline import discard_ancestors

    src = write_events(tmp_path / "events", good_events(100, seed=1))
    cache = tmp_path / "cache"
    first = TimelineStore.open(src, cache_dir=cache)
    for k in (1, 2):
        (write_events(tmp_path / f"x{k}", good_events(20, seed=k + 1))
         / "part-00000.parquet").rename(src / f"part-z{k}.parquet")
        newest = TimelineStore.open(src, cache_dir=cache)
    middle = _manifest(newest)["extended_from"]["entry"]
    assert discard_ancestors(newest) == [middle, first.path.name]
    assert [p.name for p in cache.iterdir() if p.name != "digests"] == [newest.path.name]
    assert discard_ancestors(newest) == []  # gone already
    _assert_serves(TimelineStore.open(src, cache_dir=cache), _arrays(newest), newest.meta)
    # a manifest naming anything but a key of this cache is not followed
    import json

    manifest = _manifest(newest)
    manifest["extended_from"]["entry"] = "../x1"  # the folder tmp_path/x1
    (newest.path / "manifest.json").write_text(json.dumps(manifest))
    assert discard_ancestors(newest) == [] and (tmp_path / "x1").is_dir()
