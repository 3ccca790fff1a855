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
    """Block shapes and staging sizes of the generated CUDA kernels.

    * ``fused_chunk_events``: events of one row a ``fused_entries`` block walks;
    * ``tile_events``: events whose entries a block stages in shared memory at a time (a tile
      shrinks until its entries fit ``staged_entries``);
    * ``staged_entries``: entries staged at a time;
    * ``prefetch_entries``: entries whose table rows are loaded before the current ones add;
    * ``min_entry_groups`` / ``group_sum_bytes``: slots split into at least this many entry
      groups, and enough that a block's float32 sums take at most this many bytes (a block
      holds one group's sums: smaller blocks, more of them resident per SM);
    * ``max_dims_per_block``: dims one block accumulates (more dims: more blocks per entry);
    * ``segment_slots``: slots per segment (one table and weight), at most 20;
    * ``offset32``: 32-bit row offsets when every table element's offset fits;
    * ``mark_threads`` / ``mark_events_per_thread``: threads of a ``mark`` block and events
      each thread of a counting ``mark_entries`` block takes;
    * ``mark_max_registers``: registers per thread asked of ptxas for the mark kernels
      (0: ptxas decides);
    * ``shared_carveout``: the shared memory / L1 split asked for ``fused_entries``
      (``""`` leaves it to the driver).
    """

    fused_chunk_events: int = 2048
    tile_events: int = 128
    staged_entries: int = 128
    prefetch_entries: int = 4
    min_entry_groups: int = 4
    group_sum_bytes: int = 10_000
    max_dims_per_block: int = 256
    segment_slots: int = MAX_SEGMENT_SLOTS
    offset32: bool = True
    mark_threads: int = 128
    mark_events_per_thread: int = 4
    mark_max_registers: int = 64
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
