"""What the export job needs from a store: stage a snapshot, write shards, publish it, and
read the records of the snapshot it refreshes.

:class:`dv365.stores.base.Store` implements these protocols; the export stage names them here
so that it does not depend on the later stores stage.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from dv365.export.manifest import Manifest
from dv365.export.records import OpenedRecords


@dataclass(frozen=True)
class ShardDone:
    """A shard of a staged snapshot whose records are all written."""

    index: int
    users: int
    bytes: int
    checksum: int
    recomputed: int

    def to_json(self) -> str:
        """The record every store keeps of a completed shard."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> "ShardDone":
        return cls(**json.loads(text))


class StagedSnapshot(Protocol):
    """A snapshot being written: invisible to readers until :meth:`publish`."""

    @property
    def manifest(self) -> Manifest:
        """The draft manifest it was staged with."""

    def completed_shards(self) -> dict[int, ShardDone]:
        """Shards whose records are all durably written (a resumed export skips them)."""

    def write(self, user_ids: np.ndarray, records: np.ndarray) -> None:
        """Write ``records`` (``uint8 [B, record_size]``) under ``user_ids``; writing a user
        again replaces its record (a shard redone after a crash leaves no duplicates)."""

    def finish_shard(self, done: ShardDone) -> None:
        """Mark a shard complete, after every one of its records was written."""

    def publish(self, manifest: Manifest, *, make_current: bool = True) -> None:
        """Check ``manifest`` (the completed draft) against what was written, store it, and
        with ``make_current`` switch readers to this version in one pointer change."""

    def abort(self) -> None:
        """Discard the staged snapshot and everything written to it."""


class SnapshotSink(Protocol):
    """The store side of an export."""

    @property
    def display_uri(self) -> str:
        """The store's URI with any password masked."""

    def current_version(self) -> str | None:
        """The version readers see now (``None`` before the first publish)."""

    def manifest(self, version: str | None = None) -> Manifest:
        """The manifest of a published version (the current one by default)."""

    def staged(self) -> list[Manifest]:
        """Draft manifests of snapshots staged and not yet published."""

    def stage(self, draft: Manifest) -> StagedSnapshot:
        """Start writing snapshot ``draft.id`` (or continue it, when it is staged already)."""

    def read(self, user_ids: Sequence[int] | np.ndarray, *,
             version: str | None = None) -> OpenedRecords:
        """Verified records of ``user_ids`` in ``version`` (current by default)."""
