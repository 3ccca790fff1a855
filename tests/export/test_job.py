"""The export job (dv365.export.job): every user's embedding at one time, in shards, to a
snapshot; what it refuses; resuming a staged draft.

The fixtures here (a generated data set split at a day boundary, a checkpoint of a tiny
model, a real LMDB store) are shared with tests/export/test_refresh.py and
tests/cli/test_export.py.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from dv365.data.synth import SynthConfig, synthesize
from dv365.data.timeline import TimelineStore
from dv365.durations import DAY_MS
from dv365.errors import DataError, UsageError
from dv365.export.encode import UserEncoder
from dv365.export.job import checkpoint_hash, export_snapshot
from dv365.export.codecs import codec_named
from dv365.export.records import open_records, records_checksum
from dv365.model.checkpoint import latest_checkpoint
from dv365.model.config import load_config
from dv365.model.foundation import embed_users, load_foundation_model
from dv365.model.train import Trainer
from dv365.plugins import load_plugins
from dv365.stores import open_store
from dv365.stores.base import Store
from tests.model.conftest import tiny_spec, write_config

PLUGINS = load_plugins(autoload=False)


# ------------------------------------------------------------------ a real store
_STORES = tempfile.TemporaryDirectory(prefix="dv365-test-export-")  # gone at exit


def fresh_store() -> Store:
    """A new, empty store: a real LMDB environment in a temporary folder."""
    return open_store(f"lmdb://{tempfile.mkdtemp(dir=_STORES.name)}", plugins=PLUGINS)


# ------------------------------------------------------------------ data and a checkpoint
@dataclass(frozen=True)
class Split:
    """A generated data set cut at a UTC day boundary: ``old`` holds the events before it,
    ``new`` the same files plus the last day's events as another file; both share examples.
    A few users have no event before the boundary (new in ``new``)."""

    old: Path
    new: Path
    boundary_ms: int
    checkpoint: Path
    cache: Path

    def store(self, which: str = "new") -> TimelineStore:
        return TimelineStore.open(self.old if which == "old" else self.new, cache_dir=self.cache)


def _split(full: Path, old: Path, new: Path) -> int:
    files = sorted((full / "events").glob("*.parquet"))
    table = pq.read_table(files) if len(files) > 1 else pq.read_table(files[0])
    ts = table.column("ts").to_numpy().astype("datetime64[ms]").astype(np.int64)
    boundary = (int(ts.max()) // DAY_MS) * DAY_MS
    user = table.column("user_id").to_numpy()
    newcomers = np.unique(user)[-3:]  # their whole history arrives with the last day
    later = (ts >= boundary) | np.isin(user, newcomers)
    meta = pq.read_schema(files[0]).metadata
    for folder in (old, new):
        shutil.copytree(full / "examples", folder / "examples")
        (folder / "events").mkdir(parents=True)
        pq.write_table(table.filter(~later).replace_schema_metadata(meta),
                       folder / "events" / "part-00000.parquet")
    pq.write_table(table.filter(later).replace_schema_metadata(meta),
                   new / "events" / "part-00001.parquet")
    return boundary


@pytest.fixture(scope="session")
def split(tmp_path_factory) -> Split:
    root = tmp_path_factory.mktemp("export-data")
    full = root / "full"
    synthesize(full, SynthConfig(users=200, seed=5, mean_events=60, max_events=200, days=3,
                                 examples_per_user=6))
    boundary = _split(full, root / "old", root / "new")
    spec = root / "spec.json"
    spec.write_text(tiny_spec(gap_ms=DAY_MS).to_json())
    config = write_config(root / "train", root / "old", spec, steps=2, checkpoint_every=2,
                          eval_every=2, batch_size=64)
    trainer = Trainer(load_config(config, plugins=PLUGINS), plugins=PLUGINS)
    trainer.run()
    return Split(root / "old", root / "new", boundary, latest_checkpoint(trainer.config.out),
                 root / "train" / "cache")


def export(split: Split, store: TimelineStore, at_ms: int, sink, **options):
    return export_snapshot(split.checkpoint, store, at_ms, sink, plugins=PLUGINS, **options)


def all_records(sink: Store, version: str | None = None) -> dict[int, bytes]:
    out = {}
    for ids, opened in sink.scan(version):
        assert not opened.corrupt
        out.update({int(u): r.tobytes() for u, r in zip(ids, opened.records)})
    return out


# ------------------------------------------------------------------ a full export
def test_a_full_export_writes_every_user_in_shards_and_publishes_the_manifest(split):
    store, sink = split.store(), fresh_store()
    end = int(store.ts.max()) + 1
    result = export(split, store, end, sink, shard_size=64, batch_size=32)
    m = result.manifest
    assert sink.current_version() == m.id and not m.is_draft and m.parent is None
    assert (m.users, m.recomputed, result.computed, result.copied) == (store.num_users,) * 2 + (
        store.num_users, 0)
    trained = load_foundation_model(split.checkpoint, plugins=PLUGINS)
    assert (m.rows, m.dim) == (trained.model.encoder.num_outputs, trained.ir.dim)
    assert m.record_size == m.rows * m.dim * 4 + 4 and m.bytes == m.users * m.record_size
    assert m.at_ms == end and m.gap_ms == trained.ir.gap_ms == DAY_MS
    assert m.checkpoint_hash == checkpoint_hash(split.checkpoint)
    assert m.spec_hash == trained.ir.content_hash() and m.data_key == store.path.name
    assert m.shard_size == 64 and sink.staged() == []
    records = all_records(sink)
    assert sorted(records) == store.user_ids.tolist()
    ids = np.array(sorted(records))
    assert m.checksum == records_checksum(ids, np.stack([np.frombuffer(records[u], np.uint8)
                                                         for u in ids]))
    assert result.summary().startswith(f"exported {store.num_users:,} users in ")


def test_exported_vectors_are_the_embedding_embed_users_computes(split):
    store, sink = split.store(), fresh_store()
    end = int(store.ts.max()) + 1
    export(split, store, end, sink, batch_size=50)
    trained = load_foundation_model(split.checkpoint, plugins=PLUGINS)
    users = np.arange(store.num_users)
    expected = embed_users(trained.model, trained.ir, store, users, end, batch_size=64)
    got = sink.get(store.user_ids)
    assert bool(got.found.all())
    torch.testing.assert_close(got.vectors.flatten(1), expected, rtol=1e-5, atol=1e-6)
    assert expected.double().std(0).median() > 1e-4  # users differ: not a trivial check


def test_a_user_without_history_gets_the_embedding_of_an_empty_history(split):
    store, sink = split.store(), fresh_store()
    first = int(store.ts[store.offsets[:-1]].min())
    export(split, store, first, sink)  # nobody has an event before first - gap
    vectors = sink.get(store.user_ids).vectors
    assert torch.equal(vectors, vectors[:1].expand_as(vectors))
    trained = load_foundation_model(split.checkpoint, plugins=PLUGINS)
    with torch.no_grad():
        empty = trained.model.encoder(torch.zeros(1, len(trained.ir.slices), trained.ir.dim))
    torch.testing.assert_close(vectors[0], empty[0])


def test_a_users_record_does_not_depend_on_the_batch_it_was_computed_in(split):
    store = split.store()
    trained = load_foundation_model(split.checkpoint, plugins=PLUGINS)
    end = int(store.ts.max()) + 1

    def encoder(batch_size):
        return UserEncoder(trained.model, trained.ir, store, codec_named("fp32"), end,
                           batch_size=batch_size)

    users = np.arange(16)
    whole = encoder(16).records(users)
    for part in (users[:1], users[3:7], users[[2, 9, 15]]):
        assert np.array_equal(encoder(16).records(part), whole[part])
        assert np.array_equal(encoder(len(part)).records(part), whole[part])
    big = np.arange(store.num_users)  # more users than one encoder call takes
    assert np.array_equal(encoder(len(big)).records(big)[:16], whole)


def test_fp16_records_hold_the_fp32_vectors_rounded(split):
    store = split.store()
    end = int(store.ts.max()) + 1
    full, half = fresh_store(), fresh_store()
    export(split, store, end, full)
    m = export(split, store, end, half, codec="fp16").manifest
    assert m.codec == "fp16" and m.record_size == m.rows * m.dim * 2 + 4
    exact = full.get(store.user_ids).vectors
    torch.testing.assert_close(half.get(store.user_ids).vectors, exact.half().float())


# ------------------------------------------------------------------ refusals
def test_a_time_outside_the_data_is_refused_and_nothing_is_staged(split):
    store, sink = split.store(), fresh_store()
    first = int(store.ts[store.offsets[:-1]].min())
    end = int(store.ts.max()) + 1
    with pytest.raises(DataError, match="before the data's first event"):
        export(split, store, first - 1, sink)
    with pytest.raises(DataError, match="after the data's end") as caught:
        export(split, store, end + DAY_MS + 1, sink)
    assert caught.value.where == "--at"
    assert sink.staged() == [] and sink.current_version() is None
    assert export(split, store, end + DAY_MS, sink).manifest.users == store.num_users


def test_an_unknown_codec_or_a_missing_checkpoint_is_refused(split, tmp_path):
    store, sink = split.store(), fresh_store()
    end = int(store.ts.max()) + 1
    with pytest.raises(Exception, match="int5|codec") as caught:
        export(split, store, end, sink, codec="int5")
    assert caught.value.where == "--codec"
    with pytest.raises(UsageError, match="no such checkpoint"):
        export_snapshot(tmp_path / "none.pt", store, end, sink, plugins=PLUGINS)
    assert sink.staged() == []


def test_data_whose_vocabulary_differs_from_the_checkpoints_spec_is_refused(split, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(split.old, data)
    path = data / "events" / "part-00000.parquet"
    table = pq.read_table(path)
    meta = dict(table.schema.metadata)
    raw = json.loads(meta[b"dv365"])
    raw["vocab"]["action"] = [*raw["vocab"]["action"], "repost"]
    meta[b"dv365"] = json.dumps(raw).encode()
    pq.write_table(table.replace_schema_metadata(meta), path)
    store = TimelineStore.open(data, cache_dir=tmp_path / "cache")
    with pytest.raises(DataError, match="declares action 'repost'"):
        export(split, store, int(store.ts.max()) + 1, fresh_store())


# ------------------------------------------------------------------ resuming
def test_a_staged_draft_of_the_same_inputs_is_continued(split):
    store = split.store()
    end = int(store.ts.max()) + 1
    reference = export(split, store, end, fresh_store(), shard_size=40).manifest
    sink = fresh_store()
    original = sink._stage
    calls = {"n": 0}

    def crash_after_two_shards(draft):
        staged = original(draft)
        finish = staged.finish_shard

        def finish_then_maybe_crash(done):
            finish(done)
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt
        staged.finish_shard = finish_then_maybe_crash
        return staged

    sink._stage = crash_after_two_shards
    with pytest.raises(KeyboardInterrupt):
        export(split, store, end, sink, shard_size=40)
    assert sink.current_version() is None and len(sink.staged()) == 1
    draft = sink.staged()[0]
    sink._stage = original
    result = export(split, store, end, sink, shard_size=40)
    assert result.resumed_shards == 2 and result.manifest.id == draft.id
    assert result.computed == store.num_users - 80
    assert result.manifest.checksum == reference.checksum
    assert result.manifest.users == reference.users


def iter_users(sink: Store) -> Iterator[int]:
    for ids, _ in sink.scan():
        yield from ids.tolist()


def test_records_verify_under_their_user_only(split):
    store, sink = split.store(), fresh_store()
    export(split, store, int(store.ts.max()) + 1, sink)
    m = sink.manifest()
    u, v = store.user_ids[:2].tolist()
    raw = sink._read_raw(m.id, np.array([u]))
    assert open_records([u], raw, m.record_size).found.all()
    assert not open_records([v], raw, m.record_size).found.any()
    assert list(iter_users(sink)) == store.user_ids.tolist()


# ------------------------------------------------------------------ the CUDA path
_SIMULATED_EXPORT = """
import os, sys
os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
import torch
from dv365.data.timeline import TimelineStore
from dv365.export.job import export_snapshot
from tests.export.test_job import PLUGINS, fresh_store
data, cache, checkpoint = sys.argv[1:4]
store = TimelineStore.open(data, cache_dir=cache)
end = int(store.ts.max()) + 1
cpu, sim = fresh_store(), fresh_store()
export_snapshot(checkpoint, store, end, cpu, plugins=PLUGINS, batch_size=4, shard_size=3)
result = export_snapshot(checkpoint, store, end, sim, plugins=PLUGINS, batch_size=4,
                         shard_size=3, device="cuda")
a, b = cpu.get(store.user_ids), sim.get(store.user_ids)
assert bool(b.found.all()) and result.manifest.users == store.num_users
torch.testing.assert_close(b.vectors, a.vectors, rtol=1e-5, atol=1e-6)
assert result.phases["read"] > 0  # the batches' events were gathered
print("ok", store.num_users)
"""


@pytest.mark.slow
def test_the_cuda_path_gathers_batches_and_matches_the_cpu_in_the_simulator(split, tmp_path):
    # Numba's CUDA simulator (a fresh process: it must be on before numba loads) runs the
    # generated CUDA kernels on batches gathered by dv365.export.batch_events; pinned
    # buffers and the copy stream need a real GPU (benchmarks/export.py --device cuda).
    table = pq.read_table(split.new / "events")
    users = np.unique(table.column("user_id").to_numpy())[:6]
    small = tmp_path / "events"
    small.mkdir()
    keep = np.isin(table.column("user_id").to_numpy(), users)
    pq.write_table(table.filter(keep), small / "part-00000.parquet")
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _SIMULATED_EXPORT, str(small),
                           str(tmp_path / "cache"), str(split.checkpoint)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["ok", "6"]


def test_int4_records_decode_close_to_the_fp32_vectors(split):
    store = split.store()
    end = int(store.ts.max()) + 1
    exact, small = fresh_store(), fresh_store()
    full = export(split, store, end, exact).manifest
    m = export(split, store, end, small, codec="int4").manifest
    assert m.codec == "int4" and m.record_size == m.rows * (m.dim // 2 + 4) + 4
    a = exact.get(store.user_ids).vectors
    b = small.get(store.user_ids).vectors
    relative = float((a - b).norm() / a.norm())
    print(f"int4: {full.bytes / m.bytes:.1f}x smaller than fp32 records, relative L2 "
          f"{relative:.4f}, max abs {float((a - b).abs().max()):.4f}")
    assert relative < 0.1


def test_a_non_finite_embedding_is_refused_naming_the_user(split):
    store = split.store()
    trained = load_foundation_model(split.checkpoint, plugins=PLUGINS)
    encoder = UserEncoder(trained.model, trained.ir, store, codec_named("fp16"),
                          int(store.ts.max()) + 1, batch_size=8)
    real = encoder.vectors

    def diverged(users, events=None):
        out = real(users, events)
        out[2, 0, 0] = float("nan")
        return out

    encoder.vectors = diverged
    with pytest.raises(DataError, match=f"user {int(store.user_ids[2])}'s embedding has a "
                                        "non-finite value"):
        encoder.records(np.arange(8))


def _last_events(store: TimelineStore, before_ms: int, k: int) -> TimelineStore:
    """``store`` holding only each user's ``k`` most recent events before ``before_ms``."""
    end = store.ends_before(np.arange(store.num_users), before_ms)
    start = np.maximum(np.asarray(store.offsets[:-1]), end - k)
    keep = np.concatenate([np.arange(a, b) for a, b in zip(start, end)]).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(end - start)]).astype(np.int64)
    return TimelineStore(store.user_ids, offsets,
                         {n: np.asarray(c)[keep] for n, c in store.columns.items()}, store.meta)


def test_a_history_limited_export_encodes_only_each_users_most_recent_events(split):
    store, sink = split.store(), fresh_store()
    end = int(store.ts.max()) + 1
    result = export(split, store, end, sink, history=3, batch_size=40)
    assert result.manifest.history == 3
    trained = load_foundation_model(split.checkpoint, plugins=PLUGINS)
    cut = _last_events(store, end - trained.ir.gap_ms, 3)
    expected = embed_users(trained.model, trained.ir, cut, np.arange(cut.num_users), end,
                           batch_size=64)
    got = sink.get(store.user_ids, version=result.manifest.id)
    torch.testing.assert_close(got.vectors.flatten(1), expected, rtol=1e-5, atol=1e-6)
    whole = export(split, store, end, sink)
    differs = (sink.get(store.user_ids, version=whole.manifest.id).vectors
               - got.vectors).abs().flatten(1).amax(1) > 1e-6
    assert differs.any()  # users with more than 3 events: the limit did something
    assert whole.manifest.identity() != result.manifest.identity()


def test_a_history_limit_is_at_least_one_event_and_is_not_refreshed(split):
    store, sink = split.store(), fresh_store()
    end = int(store.ts.max()) + 1
    with pytest.raises(UsageError, match="at least 1"):
        export(split, store, end, sink, history=0)
    base = export(split, store, end - DAY_MS, sink)
    with pytest.raises(UsageError, match="history-limited"):
        export(split, store, end, sink, history=5, since=base.manifest.id)
