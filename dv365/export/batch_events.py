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

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes for c in self.columns.values()) + self.offsets.nbytes


def visible_ranges(store: TimelineStore, users: np.ndarray, at_ms: int, gap_ms: int,
                   longest_window_ms: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``(start, end)`` per user: its events a slice can see at ``at_ms`` (int64 arrays)."""
    end = store.ends_before(users, at_ms - gap_ms)
    if longest_window_ms is None:
        start = np.asarray(store.offsets)[users]
    else:
        start = np.minimum(store.ends_before(users, at_ms - longest_window_ms), end)
    return start, end


def gather(store: TimelineStore, users: np.ndarray, at_ms: int, gap_ms: int,
           longest_window_ms: int | None, columns: tuple[str, ...], *,
           pinned: bool = False) -> BatchEvents:
    """The visible events of ``users`` (store indices), columns ``ts`` and ``columns`` only;
    with ``pinned``, in page-locked host memory (so a copy to the GPU can run async)."""
    users = np.ascontiguousarray(users, dtype=np.int64)
    start, end = visible_ranges(store, users, at_ms, gap_ms, longest_window_ms)
    lengths = end - start
    offsets = np.zeros(len(users) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    # One flat index of every event kept, in user then time order.
    index = np.repeat(start - offsets[:-1], lengths) + np.arange(total, dtype=np.int64)
    buffers: dict[str, torch.Tensor] = {}
    out: dict[str, np.ndarray] = {}
    for name in ("ts", *columns):
        source = store.columns[name]
        if pinned:
            buffers[name] = torch.empty(total, dtype=_torch_dtype(source.dtype),
                                        pin_memory=True)
            target = buffers[name].numpy()
        else:
            target = np.empty(total, dtype=source.dtype)
        np.take(source, index, out=target)
        out[name] = target
    if pinned:
        buffers["offsets"] = torch.from_numpy(offsets).pin_memory()
    return BatchEvents(np.asarray(store.user_ids)[users], offsets, out, store.meta, buffers)


def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.zeros(0, dtype=dtype)).dtype
