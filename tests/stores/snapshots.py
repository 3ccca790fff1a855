"""Snapshots for store tests, made with the float codecs and :func:`records.seal` directly."""

from __future__ import annotations

import numpy as np
import torch

from dv365.export.codecs import codec_named
from dv365.export.manifest import Manifest, new_snapshot_id
from dv365.export.records import records_checksum, seal
from dv365.export.sink import ShardDone


def draft(*, codec: str = "fp32", rows: int = 2, dim: int = 4, shard_size: int = 100,
          at_ms: int = 1_700_000_000_000, created_ms: int | None = None,
          snapshot_id: str | None = None, **identity) -> Manifest:
    """A draft manifest (no users, bytes or checksum yet)."""
    size = codec_named(codec).payload_size(rows, dim) + 4
    fields = dict(parent=None, checkpoint="ckpt.pt", checkpoint_hash="c0ffee",
                  spec_hash="5bec", data_key="da7a", gap_ms=0)
    fields.update(identity)
    return Manifest(id=snapshot_id or new_snapshot_id(at_ms), at_ms=at_ms, codec=codec,
                    rows=rows, dim=dim, record_size=size, shard_size=shard_size,
                    created_ms=at_ms if created_ms is None else created_ms, **fields)


def vectors_of(user_ids: np.ndarray, rows: int, dim: int, tag: float = 0.0) -> torch.Tensor:
    """Deterministic vectors: user u, row r, column c holds ``tag + u + r / 8 + c / 64``
    (exact in fp16 for small ids), so any value read tells the user and the ``tag``."""
    u = torch.as_tensor(np.asarray(user_ids, dtype=np.float32))[:, None, None]
    r = torch.arange(rows, dtype=torch.float32)[None, :, None] / 8
    c = torch.arange(dim, dtype=torch.float32)[None, None, :] / 64
    return (tag + u + r + c).float()


def records_of(manifest: Manifest, user_ids: np.ndarray, tag: float = 0.0) -> np.ndarray:
    codec = codec_named(manifest.codec)
    payloads = codec.encode(vectors_of(user_ids, manifest.rows, manifest.dim, tag)).numpy()
    return seal(np.asarray(user_ids, dtype=np.int64), payloads)


def write_snapshot(store, user_ids, *, tag: float = 0.0, publish: bool = True,
                   make_current: bool = True, **kw) -> Manifest:
    """Stage, write (one shard per ``shard_size`` users) and publish a snapshot of
    ``user_ids``; returns its completed manifest (the draft when ``publish`` is False)."""
    user_ids = np.asarray(user_ids, dtype=np.int64)
    manifest = draft(**kw)
    staged = store.stage(manifest)
    total, checksum, nbytes = 0, 0, 0
    for index, start in enumerate(range(0, len(user_ids), manifest.shard_size)):
        ids = user_ids[start:start + manifest.shard_size]
        recs = records_of(manifest, ids, tag)
        staged.write(ids, recs)
        part = records_checksum(ids, recs)
        staged.finish_shard(ShardDone(index, len(ids), recs.nbytes, part, len(ids)))
        total, nbytes, checksum = total + len(ids), nbytes + recs.nbytes, \
            (checksum + part) % (1 << 64)
    if not publish:
        return manifest
    done = manifest.completed(users=total, bytes=nbytes, checksum=checksum, recomputed=total)
    staged.publish(done, make_current=make_current)
    return done
