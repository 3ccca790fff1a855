"""Training input from a store: a batch of user ids -> the DV365 vectors and found mask.

A downstream model trains on the days after the export, against one published snapshot, as
production does; a new version published during training must not change what it reads, so
the version is resolved once, when the store is opened, and every batch reads that one.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from dv365.stores import open_store


class StoreEmbeddings:
    """Reads decoded user vectors from the store at ``uri``, one version for its lifetime.

    ``version`` pins that version (default: the store's current one at open; a store with
    none is a :class:`~dv365.errors.NotFoundError`). Calling it with a batch of user ids
    returns ``(vectors float32 [B, rows, dim], found bool [B])`` on ``device``; a user without
    a valid record is ``found`` False (and zeros: an adapter replaces them by its learned
    missing input). ``rows``, ``dim`` and ``codec`` are the snapshot's.
    """

    def __init__(self, uri: str, *, version: str | None = None,
                 device: torch.device | str = "cpu", plugins=None, where: str | None = None):
        self.store = open_store(uri, plugins=plugins, where=where)
        try:
            self.manifest = self.store.manifest(version)
        except Exception:
            self.store.close()
            raise
        self.version: str = self.manifest.id
        self.device = torch.device(device)

    @property
    def rows(self) -> int:
        return self.manifest.rows

    @property
    def dim(self) -> int:
        return self.manifest.dim

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

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "StoreEmbeddings":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
