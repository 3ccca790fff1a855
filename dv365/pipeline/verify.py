"""Checking a published snapshot before it becomes current (the pipeline's verify step).

* **Counts**: the manifest's users equal the data's users and the records the store holds.
* **Checksum**: every record read back and verified (payload CRC bound to its user), and
  the order-free sum of their digests (:func:`dv365.export.records.records_checksum`) equal
  to the manifest's.
* **A sample recomputed**: ``sample`` users (drawn by the version id, so a rerun checks the
  same ones) embedded again from the checkpoint with :func:`dv365.model.foundation.
  embed_users` (the jagged path through torchrec, not the export's fused kernel) and
  compared with the stored vectors decoded by the snapshot's codec. The tolerance is the
  codec's own error on the recomputed vectors: per output row, twice the largest
  ``|decode(encode(v)) - v|`` plus 1e-4 of the row's largest value (float sums in another
  order); a lossless codec then allows only float noise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from dv365.data.timeline import TimelineStore
from dv365.errors import DataError
from dv365.export.codecs import codec_named
from dv365.export.records import records_checksum
from dv365.model.foundation import embed_users, load_foundation_model
from dv365.stores.base import Store


@dataclass(frozen=True)
class Verified:
    """What the verification found (all of it passed)."""

    version: str
    users: int
    checksum: str
    sampled: int
    worst_error_ratio: float
    """The sample's largest ``|stored - recomputed|`` over its tolerance (at most 1)."""

    def to_dict(self) -> dict:
        return asdict(self)


def verify_snapshot(store: Store, version: str, data: TimelineStore, *, sample: int,
                    device: str = "cpu") -> Verified:
    """Check ``version`` of ``store`` against ``data`` (see the module docstring); a
    :class:`DataError` naming the first difference."""
    manifest = store.manifest(version)
    where = f"{store.display_uri} version {version}"
    if manifest.users != data.num_users:
        raise DataError(f"the snapshot holds {manifest.users:,} users, the data "
                        f"{data.num_users:,}", where=where)
    total, count = 0, 0
    for ids, opened in store.scan(version):
        if not opened.found.all():
            bad = ids[~opened.found][0]
            raise DataError(f"the record of user {int(bad)} does not verify", where=where)
        total = records_checksum(ids, opened.records, total)
        count += len(ids)
    if count != manifest.users:
        raise DataError(f"the store holds {count:,} records, the manifest says "
                        f"{manifest.users:,}", where=where)
    if total != manifest.checksum:
        raise DataError(f"the records' checksum {total:#x} is not the manifest's "
                        f"{manifest.checksum:#x}", where=where)
    worst, chosen = 0.0, np.zeros(0, dtype=np.int64)
    if sample:
        rng = np.random.default_rng(list(version.encode()))
        chosen = np.sort(rng.choice(data.num_users, min(sample, data.num_users),
                                    replace=False))
        worst = _recompute(store, version, manifest, data, chosen, device, where)
    return Verified(version, count, f"{total:#018x}", len(chosen), worst)


def _recompute(store: Store, version: str, manifest, data: TimelineStore,
               chosen: np.ndarray, device: str, where: str) -> float:
    trained = load_foundation_model(manifest.checkpoint, device=device)
    shape = (len(chosen), manifest.rows, manifest.dim)
    fresh = embed_users(trained.model, trained.ir, data, chosen, manifest.at_ms
                        ).reshape(shape).float()
    codec = codec_named(manifest.codec, where=where)
    roundtrip = codec.decode(codec.encode(fresh), manifest.rows, manifest.dim).cpu()
    tolerance = (2 * (roundtrip - fresh).abs().amax(dim=2, keepdim=True)
                 + 1e-4 * fresh.abs().amax(dim=2, keepdim=True))
    ids = np.asarray(data.user_ids[chosen], dtype=np.int64)
    stored = store.get(ids, version=version)
    if not bool(stored.found.all()):
        raise DataError(f"user {int(ids[~stored.found.numpy()][0])} is missing", where=where)
    error = (stored.vectors.float() - fresh).abs()
    ratio = error / tolerance.clamp_min(torch.finfo(torch.float32).tiny)
    worst = float(ratio.max()) if ratio.numel() else 0.0
    if worst > 1.0:
        user, row, _ = np.unravel_index(int(ratio.argmax()), ratio.shape)
        raise DataError(f"user {int(ids[user])}'s stored row {int(row)} differs from the "
                        f"recomputed embedding by {float(error[user, row].max()):.3g}, more "
                        f"than the {manifest.codec} codec allows "
                        f"({float(tolerance[user, row, 0]):.3g})", where=where,
                        hint="the snapshot stays unpublished; export again")
    return worst
