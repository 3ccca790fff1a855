"""The events one batch of users needs, gathered into a small event store of its own.

On a GPU the fused kernel reads the store's columns from device memory; copying a whole
store there does not scale (a paper-scale user is 1.2-1.8 MB of events), so the export
copies one batch at a time. What travels is narrowed twice: only the columns the kernel plan
reads (plus ``ts``), and only the events a slice can see, ``R - longest window <= ts <
R - gap``. The kernels find each slice's events by binary search on ``ts`` within a user, so
a user's events cut to that range pool to the same bits as the whole history.

:class:`BatchEvents` satisfies :class:`~dv365.data.event_store.EventStore`; its users are the
batch's rows in order (row ``b`` is user index ``b``).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from dv365.data.schema import DatasetMeta
from dv365.data.timeline import TimelineStore


@dataclass(eq=False)  # identity: the kernels' caches key stores by object
class BatchEvents:
    """An event store holding the visible events of one batch of users."""

    user_ids: np.ndarray
    offsets: np.ndarray
    columns: dict[str, np.ndarray]
    meta: DatasetMeta
    pinned: dict[str, torch.Tensor] = field(default_factory=dict)
    """The columns' page-locked host buffers (``columns`` are views of them), when pinned."""
    device: dict[str, torch.Tensor] = field(default_factory=dict)
    """Device copies of ``offsets`` and the columns, once a copy to the GPU started."""
    slot: int | None = None
    """The :class:`StagingRing` slot ``pinned`` lives in."""

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes for c in self.columns.values()) + self.offsets.nbytes


def visible_ranges(store: TimelineStore, users: np.ndarray, at_ms: int, gap_ms: int,
                   longest_window_ms: int | None, history: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``(start, end)`` per user: its events a slice can see at ``at_ms`` (int64 arrays), at
    most the ``history`` most recent of them."""
    end = store.ends_before(users, at_ms - gap_ms)
    if longest_window_ms is None:
        start = np.asarray(store.offsets)[users]
    else:
        start = np.minimum(store.ends_before(users, at_ms - longest_window_ms), end)
    if history is not None:
        start = np.maximum(start, end - history)
    return start, end


class StagingRing:
    """Page-locked host buffers reused batch after batch, for copies to the GPU.

    Allocating page-locked memory costs about as much as copying into it (docs/export.md
    has the measurements), so the export allocates a few slots once, grows one only
    when a batch needs more, and reuses each after the copy that last read it finished
    (:meth:`release` records that copy's CUDA event)."""

    ALIGN = 64

    def __init__(self, slots: int = 3):
        self._slots: list[torch.Tensor | None] = [None] * slots
        self._ready: list[object | None] = [None] * slots
        self._next = 0

    def take(self, nbytes: int) -> tuple[int, torch.Tensor]:
        """``(slot, uint8 buffer of >= nbytes)``, once the slot's last copy finished."""
        slot = self._next
        self._next = (slot + 1) % len(self._slots)
        if self._ready[slot] is not None:
            self._ready[slot].synchronize()
            self._ready[slot] = None
        buffer = self._slots[slot]
        if buffer is None or buffer.numel() < nbytes:
            grown = max(nbytes, int(1.25 * buffer.numel()) if buffer is not None else 0)
            buffer = self._slots[slot] = torch.empty(grown, dtype=torch.uint8, pin_memory=True)
        return slot, buffer

    def release(self, slot: int, copied) -> None:
        """The copy (a CUDA event) after which ``slot`` may be overwritten."""
        self._ready[slot] = copied


COPY_THREADS = min(16, os.cpu_count() or 1)
_COPIERS = ThreadPoolExecutor(max_workers=COPY_THREADS, thread_name_prefix="dv365-gather")


def gather(store: TimelineStore, users: np.ndarray, at_ms: int, gap_ms: int,
           longest_window_ms: int | None, columns: tuple[str, ...], *,
           ring: StagingRing | None = None, history: int | None = None) -> BatchEvents:
    """The visible events of ``users`` (store indices), at most the ``history`` most recent
    of each, columns ``ts`` and ``columns`` only (each user's range may carry a short
    invisible tail, see below);
    with a ``ring``, in one of its page-locked buffers (so a copy to the GPU can run async;
    ``BatchEvents.slot`` says which, to :meth:`StagingRing.release` after the copy).

    The copies run on a pool of threads (a memcpy releases the GIL): one thread cannot
    keep up with the copy to the GPU (docs/export.md)."""
    users = np.ascontiguousarray(users, dtype=np.int64)
    start, end = visible_ranges(store, users, at_ms, gap_ms, longest_window_ms, history)
    if len(users) > 1 and history is None:
        # A user's invisible tail (its events after the cutoff) travels along when it is
        # short and the next user's events follow it: the kernels cut by ts anyway, and
        # adjacent users then copy as one run instead of one copy a user and column.
        own_end = np.asarray(store.offsets)[users[:-1] + 1]
        short = (start[1:] == own_end) & (
            own_end - end[:-1] <= np.maximum(4096, (end[:-1] - start[:-1]) // 4))
        end = end.copy()
        end[:-1][short] = own_end[short]
    lengths = end - start
    offsets = np.zeros(len(users) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    names = ("ts", *columns)
    sources = [store.columns[name] for name in names]
    layout, nbytes = [], 0
    for source in sources:
        layout.append(nbytes)
        nbytes += -(-total * source.dtype.itemsize // StagingRing.ALIGN) * StagingRing.ALIGN
    slot, pinned = None, {}
    if ring is not None:
        slot, buffer = ring.take(nbytes + offsets.nbytes)
        for name, src, at in zip(names, sources, layout):
            size = total * src.dtype.itemsize
            pinned[name] = buffer[at:at + size].view(_torch_dtype(src.dtype))
        pinned["offsets"] = buffer[nbytes:nbytes + offsets.nbytes].view(torch.int64)
        pinned["offsets"].numpy()[:] = offsets
        offsets = pinned["offsets"].numpy()
        out = {name: pinned[name].numpy() for name in names}
    else:
        out = {name: np.empty(total, dtype=src.dtype) for name, src in zip(names, sources)}
    # Adjacent users whose visible ranges touch travel as one run (a whole export's batch of
    # consecutive users is one run per column when no window cuts it).
    breaks = np.flatnonzero(start[1:] != end[:-1]) + 1
    run_lo = np.concatenate([[0], breaks]).astype(np.int64)
    run_hi = np.concatenate([breaks, [len(users)]]).astype(np.int64)
    pieces = [(int(start[a]), int(end[b - 1]), int(offsets[a])) for a, b in zip(run_lo, run_hi)
              if end[b - 1] > start[a]]
    # One task per (column, slice of a run), about COPY_THREADS slices a column: each thread
    # streams one long contiguous copy (np.copyto releases the GIL).
    chunk = max(1 << 16, -(-total // COPY_THREADS))
    tasks = [(out[name], np.asarray(source), lo + k, min(hi, lo + k + chunk), at + k)
             for name, source in zip(names, sources) for lo, hi, at in pieces
             for k in range(0, hi - lo, chunk)]

    def copy(task) -> None:
        target, source, lo, hi, at = task
        np.copyto(target[at:at + hi - lo], source[lo:hi])

    list(_COPIERS.map(copy, tasks))
    events = BatchEvents(np.asarray(store.user_ids)[users], offsets, out, store.meta, pinned)
    events.slot = slot
    return events


def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.zeros(0, dtype=dtype)).dtype
