"""A snapshot's manifest: what it was computed from and what it holds.

A store keeps one manifest per version. While a snapshot is being written its manifest is a
*draft* (``users``, ``bytes`` and ``checksum`` unset); publishing fills them from the
completed shards. :meth:`Manifest.identity` is what a resumed export must agree on with a
draft to continue it instead of starting over.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from dataclasses import dataclass
from typing import Any

from dv365.durations import moment_text
from dv365.errors import DataError

FORMAT = "dv365-snapshot"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Manifest:
    """One snapshot of exported embeddings (one store version)."""

    id: str
    parent: str | None
    """The snapshot an incremental refresh started from (``None`` for a full export)."""
    checkpoint: str
    checkpoint_hash: str
    spec_hash: str
    data_key: str
    """The content key of the dataset the events came from."""
    at_ms: int
    """Request time: every user's history strictly before ``at_ms - gap_ms`` is encoded."""
    gap_ms: int
    codec: str
    rows: int
    """Vectors per user (the encoder's ``N_out``)."""
    dim: int
    record_size: int
    shard_size: int
    created_ms: int
    users: int | None = None
    bytes: int | None = None
    checksum: int | None = None
    """Sum modulo 2**64 of the records' digests (:mod:`dv365.export.records`)."""
    recomputed: int | None = None
    """Users whose embedding this export computed; the rest were copied from ``parent``."""
    history: int | None = None
    """At most this many of a user's most recent visible events were encoded (``None``:
    all of them)."""
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    @property
    def is_draft(self) -> bool:
        return self.checksum is None

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows, self.dim)

    def identity(self) -> dict[str, Any]:
        """The fields a resumed export must match (everything that decides the bytes)."""
        return {k: getattr(self, k) for k in (
            "parent", "checkpoint_hash", "spec_hash", "data_key", "at_ms", "gap_ms", "codec",
            "rows", "dim", "record_size", "shard_size", "history")}

    def completed(self, *, users: int, bytes: int, checksum: int,
                  recomputed: int) -> "Manifest":
        return dataclasses.replace(self, users=users, bytes=bytes, checksum=checksum,
                                   recomputed=recomputed)

    def draft(self) -> "Manifest":
        """The draft this manifest completed (what a copy of the snapshot is staged with)."""
        return dataclasses.replace(self, users=None, bytes=None, checksum=None,
                                   recomputed=None)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes, *, where: str | None = None) -> "Manifest":
        try:
            raw = json.loads(text)
            if raw.get("format") != FORMAT:
                raise ValueError(f"not a {FORMAT} manifest")
            if raw.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"manifest format version {raw.get('format_version')}, this "
                                 f"dv365 reads {FORMAT_VERSION}")
            return cls(**raw)
        except (ValueError, TypeError, AttributeError) as exc:
            raise DataError(f"unreadable snapshot manifest: {exc}", where=where) from None

    def summary(self) -> str:
        """One line for listings: id, time, shape, codec, users."""
        users = "draft" if self.is_draft else f"{self.users:,} users"
        return (f"{self.id}  at {moment_text(self.at_ms)}  [{self.rows}, {self.dim}] "
                f"{self.codec}  {users}")


def new_snapshot_id(at_ms: int) -> str:
    """A fresh, sortable snapshot id: the request time, then random hex."""
    stamp = moment_text(at_ms, "minute").replace("-", "").replace(":", "").replace(" ", "T")
    return f"{stamp}-{secrets.token_hex(4)}"

