"""One stored record: a user's codec payload followed by a checksum that binds it to the user.

Layout (little-endian)::

    payload   codec.payload_size(rows, dim) bytes
    crc32     4 bytes: zlib.crc32(user_id as int64 || payload)

The checksum covers the user id, so a record copied under another user's key (a foreign
value) fails like a flipped byte; it does not cover the snapshot id, so an unchanged user's
record is the same bytes in every snapshot and an incremental refresh can copy it. A record
of the wrong length (truncated, or written by another codec or shape) fails before the
checksum is computed.

A snapshot's ``checksum`` (in its manifest) is the sum modulo 2**64 of every record's
:func:`record_digest`: independent of write order, so shards written by separate processes
(or resumed after a crash) combine by addition, and any store can be verified by one scan.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

CHECKSUM_BYTES = 4
_MASK64 = (1 << 64) - 1


def record_size(payload_size: int) -> int:
    """Bytes of one record holding a payload of ``payload_size`` bytes."""
    return payload_size + CHECKSUM_BYTES


def _crc(user_id: int, payload: bytes | memoryview) -> int:
    return zlib.crc32(payload, zlib.crc32(int(user_id).to_bytes(8, "little", signed=True)))


def seal(user_ids: np.ndarray, payloads: np.ndarray) -> np.ndarray:
    """Records ``uint8 [B, P + 4]`` of payloads ``uint8 [B, P]`` for ``user_ids``."""
    payloads = np.ascontiguousarray(payloads, dtype=np.uint8)
    if payloads.ndim != 2 or len(payloads) != len(user_ids):
        raise ValueError(f"expected [{len(user_ids)}, P] payloads, got {payloads.shape}")
    out = np.empty((len(payloads), payloads.shape[1] + CHECKSUM_BYTES), dtype=np.uint8)
    out[:, :-CHECKSUM_BYTES] = payloads
    crcs = np.fromiter((_crc(u, p.data) for u, p in zip(user_ids.tolist(), payloads)),
                       dtype="<u4", count=len(payloads))
    out[:, -CHECKSUM_BYTES:] = crcs.view(np.uint8).reshape(-1, CHECKSUM_BYTES)
    return out


def record_problem(user_id: int, record: bytes | None, size: int) -> str | None:
    """Why ``record`` is not a valid record of ``user_id`` (``None`` when it is)."""
    if record is None:
        return "missing"
    if len(record) != size:
        return f"{len(record)} bytes where a record has {size}"
    view = memoryview(record)
    want = int.from_bytes(view[-CHECKSUM_BYTES:], "little")
    if _crc(user_id, view[:-CHECKSUM_BYTES]) != want:
        return "checksum mismatch"
    return None


@dataclass(frozen=True)
class OpenedRecords:
    """Verified records of a batch of users, in the order asked."""

    records: np.ndarray
    """``uint8 [B, size]``: the verified records; zero rows where ``found`` is False."""
    found: np.ndarray
    """``bool [B]``: a valid record was stored."""
    corrupt: tuple[tuple[int, str], ...]
    """``(user_id, problem)`` of every record that was stored but failed verification."""

    @property
    def payloads(self) -> np.ndarray:
        """``uint8 [B, size - 4]``: the codec payloads (a view)."""
        return self.records[:, :-CHECKSUM_BYTES]


def open_records(user_ids: Sequence[int] | np.ndarray, raw: Sequence[bytes | None],
                 size: int) -> OpenedRecords:
    """Verify raw values read for ``user_ids`` (``None`` where nothing was stored)."""
    ids = np.asarray(user_ids, dtype=np.int64).tolist()
    out = np.zeros((len(ids), size), dtype=np.uint8)
    found = np.zeros(len(ids), dtype=bool)
    corrupt = []
    for i, (user, value) in enumerate(zip(ids, raw)):
        if value is None:
            continue
        problem = record_problem(user, value, size)
        if problem is None:
            out[i] = np.frombuffer(value, dtype=np.uint8)
            found[i] = True
        else:
            corrupt.append((user, problem))
    return OpenedRecords(out, found, tuple(corrupt))


def record_digest(user_id: int, record: bytes | memoryview | np.ndarray) -> int:
    """A record's 64-bit contribution to a snapshot checksum."""
    h = hashlib.blake2b(int(user_id).to_bytes(8, "little", signed=True), digest_size=8)
    h.update(record)
    return int.from_bytes(h.digest(), "little")


def records_checksum(user_ids: np.ndarray, records: np.ndarray, start: int = 0) -> int:
    """``start`` plus the digests of ``records`` (rows) of ``user_ids``, modulo 2**64."""
    total = start
    for user, record in zip(np.asarray(user_ids).tolist(), np.asarray(records)):
        total += record_digest(user, record.data)
    return total & _MASK64


def combine_checksums(parts: Sequence[int]) -> int:
    """The checksum of the union of disjoint sets of records."""
    return sum(parts) & _MASK64
