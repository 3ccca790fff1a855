"""Snapshots for the Redis store tests, and a small crash harness: a publisher process that
publishes snapshot after snapshot (resuming a staged one first) and reader processes that
read batches throughout and count torn ones.

Every value a snapshot of *generation* ``g`` stores for user ``u`` is ``g + u % 97`` (fp32,
exact), so a reader can tell from the values alone which snapshot each record came from: a
batch whose records come from two snapshots, or that misses a user, is torn. The publisher
and the readers run forked and use only NumPy on the write and read paths (no torch op in a
forked child).
"""

from __future__ import annotations

import os
import random
import time

import numpy as np

from dv365.export.manifest import Manifest
from dv365.export.records import records_checksum, seal
from dv365.export.sink import ShardDone

ROWS, DIM = 2, 8


def draft(*, at_ms: int, codec: str, rows: int, dim: int, record_size: int,
          shard_size: int, tag: str = "") -> Manifest:
    """A draft manifest of a full export at ``at_ms``."""
    return Manifest(id=f"v{at_ms:013d}{tag}", parent=None, checkpoint="ckpt.pt",
                    checkpoint_hash="c0ffee", spec_hash="5bec", data_key="da7a", at_ms=at_ms,
                    gap_ms=0, codec=codec, rows=rows, dim=dim, record_size=record_size,
                    shard_size=shard_size, created_ms=int(time.time() * 1000))


def publish(store, manifest: Manifest, ids: np.ndarray, payloads: np.ndarray, *,
            make_current: bool = True, stop_after_shards: int | None = None) -> Manifest:
    """Stage ``manifest`` (or resume it), write the shards not yet complete, publish; returns
    the completed manifest. ``stop_after_shards`` returns early (a draft left staged)."""
    staged = store.stage(manifest)
    done = staged.completed_shards()
    size = manifest.shard_size
    for index, start in enumerate(range(0, len(ids), size)):
        if stop_after_shards is not None and index >= stop_after_shards:
            return manifest
        if index in done:
            continue
        chunk = ids[start:start + size]
        records = seal(chunk, payloads[start:start + size])
        staged.write(chunk, records)
        staged.finish_shard(ShardDone(index, len(chunk), records.nbytes,
                                      records_checksum(chunk, records), len(chunk)))
    shards = staged.completed_shards().values()
    final = manifest.completed(users=sum(s.users for s in shards),
                               bytes=sum(s.bytes for s in shards),
                               checksum=sum(s.checksum for s in shards) % 2**64,
                               recomputed=sum(s.recomputed for s in shards))
    staged.publish(final, make_current=make_current)
    return final


def generation_payloads(ids: np.ndarray, generation: int) -> np.ndarray:
    """fp32 payloads ``uint8 [B, ROWS*DIM*4]`` holding ``generation + id % 97``."""
    values = (generation + ids % 97).astype(np.float32)
    return np.repeat(values[:, None], ROWS * DIM, axis=1).view(np.uint8)


def generation_of(ids: np.ndarray, opened) -> set[int]:
    """The generations a batch's records come from (-1 for a user not found)."""
    values = opened.payloads.view(np.float32)
    gens = set((values[:, 0] - ids % 97).astype(np.int64)[opened.found].tolist())
    if not opened.found.all():
        gens.add(-1)
    return gens


def publish_generation(store, ids: np.ndarray, generation: int, shard_size: int) -> Manifest:
    manifest = draft(at_ms=generation, codec="fp32", rows=ROWS, dim=DIM,
                     record_size=ROWS * DIM * 4 + 4, shard_size=shard_size)
    return publish(store, manifest, ids, generation_payloads(ids, generation))


def publisher(uri: str, ids: np.ndarray, shard_size: int, seed: int) -> None:
    """Forever: resume a staged snapshot or start the next generation, publish it, gc."""
    from dv365.stores import open_store

    store = open_store(uri)
    rng = random.Random(seed)
    while True:
        staged = store.staged()
        if staged:
            manifest = staged[0]
            publish(store, manifest, ids, generation_payloads(ids, manifest.at_ms))
        else:
            known = [m.at_ms for m in (i.manifest for i in store.versions())]
            publish_generation(store, ids, max(known, default=0) + 1, shard_size)
        store.gc(keep=2)
        if rng.random() < 0.1:
            store.rollback()


def reader(uri: str, ids: np.ndarray, batch: int, stop, results, seed: int) -> None:
    """Read random batches until ``stop`` is set; put (batches, torn, first problem)."""
    from dv365.stores import open_store

    store = open_store(uri)
    rng = np.random.default_rng(seed)
    batches = torn = 0
    problem = None
    while not stop.is_set():
        chosen = rng.choice(ids, batch, replace=False)
        try:
            gens = generation_of(chosen, store.read(chosen))
        except Exception as exc:  # a reader never fails; record why
            gens, problem = {-2}, problem or f"{type(exc).__name__}: {exc}"
        batches += 1
        if len(gens) != 1 or -1 in gens or -2 in gens:
            torn += 1
            problem = problem or f"batch of generations {sorted(gens)}"
    results.put((os.getpid(), batches, torn, problem))
