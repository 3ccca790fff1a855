"""The tunable values of the CUDA kernels, as one frozen, typed value.

:class:`CudaTuning` is passed to the CUDA launcher (``tuning=`` of :func:`~dv365.kernels.
fused.pool_fused` and friends) and is part of the compiled-kernel cache key, so kernels
generated with different values never mix and nothing needs clearing. The defaults are the
values measured best on an H200 (docs/kernels.md, "Design record", has the measurements);
tests use small values to reach every path of the generated code with tiny data.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Literal

# An entry carries the slot bits of one segment in bits 32..51 (see cuda_layout): at most 20.
MAX_SEGMENT_SLOTS = 20


@dataclass(frozen=True)
class CudaTuning:
    """Block shapes and staging sizes of the generated CUDA kernels (each field says what it
    sizes; docs/kernels.md's design record has what was measured)."""

    # events of one batch row that a ``fused_entries`` block walks
    fused_chunk_events: int = 2048
    # events whose entries a block stages in shared memory at a time (shrunk until their
    # entries fit ``staged_entries``)
    tile_events: int = 128
    staged_entries: int = 128
    # entries whose table rows are loaded before the current ones are added
    prefetch_entries: int = 4
    # slots split into at least this many entry groups, and into enough that a block's
    # float32 sums take at most ``group_sum_bytes`` (smaller blocks: more resident per SM)
    min_entry_groups: int = 4
    group_sum_bytes: int = 10_000
    # dims one block accumulates (more dims: more blocks walk each entry)
    max_dims_per_block: int = 256
    # slots per segment (one table and weight), at most the 20 slot bits of an entry
    segment_slots: int = MAX_SEGMENT_SLOTS
    # 32-bit row offsets where every table element's offset fits
    offset32: bool = True
    # threads of a mark block, and events each thread of a counting mark_entries takes
    mark_threads: int = 128
    mark_events_per_thread: int = 4
    # registers per thread asked of ptxas for the mark kernels (0: ptxas decides)
    mark_max_registers: int = 64
    # the shared memory / L1 split asked for fused_entries ("": the driver's)
    shared_carveout: Literal["MaxShared", "MaxL1", ""] = "MaxShared"

    def __post_init__(self) -> None:
        for name in ("fused_chunk_events", "tile_events", "staged_entries", "prefetch_entries",
                     "min_entry_groups", "group_sum_bytes", "max_dims_per_block",
                     "segment_slots", "mark_threads", "mark_events_per_thread"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"CudaTuning.{name} must be at least 1")
        if self.segment_slots > MAX_SEGMENT_SLOTS:
            raise ValueError(f"CudaTuning.segment_slots is at most {MAX_SEGMENT_SLOTS} "
                             "(the slot bits of an entry)")
        if self.mark_max_registers < 0:
            raise ValueError("CudaTuning.mark_max_registers cannot be negative")

    def key(self) -> str:
        """A short digest of every value (part of the compiled-kernel cache key)."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]


DEFAULT_TUNING = CudaTuning()
