"""Training input from a store: a batch of user ids -> the DV365 vectors and found mask.

A downstream model trains on the days after the export, against one published snapshot, as
production does; a new version published during training must not change what it reads, so
the version is resolved once, when the store is opened, and every batch reads that one
(:class:`StoreEmbeddings`). A model served from a store refreshed every day reads, for each
request, the snapshot published at the start of its day (:class:`DailyEmbeddings`). Both
answer ``for_batch(batch)``, what the training and evaluation loops call.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from dv365.stores import open_store


class _PinnedVersions:
    """A store opened with some of its versions resolved once, all of one shape; what
    :class:`StoreEmbeddings` and :class:`DailyEmbeddings` share."""

    def __init__(self, uri: str, versions: Sequence[str | None], *,
                 device: torch.device | str, plugins, where: str | None):
        self.store = open_store(uri, plugins=plugins, where=where)
        try:
            self.manifests = [self.store.manifest(v) for v in versions]
            shapes = {(m.rows, m.dim) for m in self.manifests}
            if len(shapes) != 1:
                raise ValueError(f"the versions have different shapes: {sorted(shapes)}")
        except Exception:
            self.store.close()
            raise
        self.device = torch.device(device)

    @property
    def rows(self) -> int:
        return self.manifests[0].rows

    @property
    def dim(self) -> int:
        return self.manifests[0].dim

    def close(self) -> None:
        self.store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StoreEmbeddings(_PinnedVersions):
    """Reads decoded user vectors from the store at ``uri``, one version for its lifetime.

    ``version`` pins that version (default: the store's current one at open; a store with
    none is a :class:`~dv365.errors.NotFoundError`). Calling it with a batch of user ids
    returns ``(vectors float32 [B, rows, dim], found bool [B])`` on ``device``; a user without
    a valid record is ``found`` False (and zeros: an adapter replaces them by its learned
    missing input). ``rows``, ``dim`` and ``codec`` are the snapshot's.
    """

    def __init__(self, uri: str, *, version: str | None = None,
                 device: torch.device | str = "cpu", plugins=None, where: str | None = None):
        super().__init__(uri, [version], device=device, plugins=plugins, where=where)
        self.manifest = self.manifests[0]
        self.version: str = self.manifest.id

    @property
    def codec(self) -> str:
        return self.manifest.codec

    def __call__(self, user_ids: torch.Tensor | np.ndarray | Sequence[int]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(user_ids, torch.Tensor):
            user_ids = user_ids.detach().cpu().numpy()
        lookup = self.store.get(np.asarray(user_ids, dtype=np.int64), version=self.version)
        return (lookup.vectors.to(self.device, non_blocking=True),
                lookup.found.to(self.device, non_blocking=True))

    def for_batch(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The vectors of a :class:`~dv365.downstream.inputs.Batch`'s users."""
        return self(batch.user_ids)


class DailyEmbeddings(_PinnedVersions):
    """Reads, for each request, the snapshot current at its time from a store refreshed on
    a schedule: ``versions`` are ``(from_ms, version id)`` in increasing time, and a request
    at ``t`` reads the last version with ``from_ms <= t`` (a request before the first one is
    an error: no snapshot was published yet). Every version is resolved when opened."""

    def __init__(self, uri: str, versions: Sequence[tuple[int, str]], *,
                 device: torch.device | str = "cpu", plugins=None, where: str | None = None):
        if not versions:
            raise ValueError("DailyEmbeddings needs at least one version")
        starts = [int(t) for t, _ in versions]
        if any(b <= a for a, b in zip(starts, starts[1:])):
            raise ValueError("versions must be in increasing time")
        super().__init__(uri, [v for _, v in versions], device=device, plugins=plugins,
                         where=where)
        self.starts = np.asarray(starts, dtype=np.int64)

    @property
    def versions(self) -> list[str]:
        """The version ids, in time order."""
        return [m.id for m in self.manifests]

    def __call__(self, user_ids: np.ndarray, request_ts: np.ndarray
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        user_ids = np.asarray(user_ids, dtype=np.int64)
        which = np.searchsorted(self.starts, np.asarray(request_ts, dtype=np.int64),
                                side="right") - 1
        if (which < 0).any():
            raise ValueError("a request comes before the first snapshot")
        vectors = torch.zeros((len(user_ids), self.rows, self.dim), dtype=torch.float32)
        found = torch.zeros(len(user_ids), dtype=torch.bool)
        for k in np.unique(which):
            rows = np.flatnonzero(which == k)
            lookup = self.store.get(user_ids[rows], version=self.manifests[k].id)
            index = torch.from_numpy(rows)
            vectors[index] = lookup.vectors.to(torch.float32)
            found[index] = lookup.found
        return vectors.to(self.device), found.to(self.device)

    def for_batch(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The vectors of a :class:`~dv365.downstream.inputs.Batch`'s users at its
        requests' times."""
        return self(batch.user_ids, batch.request_ts)
