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


def _crc_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(0xEDB88320), table >> 1)
    return table.astype(np.uint32)


_CRC_TABLE = _crc_table()


def _id_crcs(user_ids: np.ndarray) -> list[int]:
    """``zlib.crc32`` of each user id's 8 little-endian bytes, for a whole batch at once
    (the start value each record's checksum continues from)."""
    if len(user_ids) < 32:  # the table loop's fixed cost is more than a few calls
        return [zlib.crc32(u.to_bytes(8, "little", signed=True)) for u in user_ids.tolist()]
    octets = np.ascontiguousarray(user_ids, dtype="<i8").view(np.uint8).reshape(-1, 8)
    crc = np.full(len(octets), 0xFFFFFFFF, dtype=np.uint32)
    for j in range(8):
        crc = _CRC_TABLE[(crc ^ octets[:, j]) & 0xFF] ^ (crc >> 8)
    return (crc ^ np.uint32(0xFFFFFFFF)).tolist()


def seal(user_ids: np.ndarray, payloads: np.ndarray) -> np.ndarray:
    """Records ``uint8 [B, P + 4]`` of payloads ``uint8 [B, P]`` for ``user_ids``."""
    payloads = np.ascontiguousarray(payloads, dtype=np.uint8)
    if payloads.ndim != 2 or len(payloads) != len(user_ids):
        raise ValueError(f"expected [{len(user_ids)}, P] payloads, got {payloads.shape}")
    out = np.empty((len(payloads), payloads.shape[1] + CHECKSUM_BYTES), dtype=np.uint8)
    out[:, :-CHECKSUM_BYTES] = payloads
    crcs = np.fromiter((zlib.crc32(p.data, start)
                        for p, start in zip(payloads, _id_crcs(np.asarray(user_ids)))),
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
    """``uint8 [B, size]``: the verified records; zero rows where ``found`` is False (may be
    a read-only view of the values read: copy before writing to it)."""
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
    """Verify raw values read for ``user_ids`` (``None`` where nothing was stored).

    One pass builds the batch: values of the right length are joined into one buffer (a
    missing or wrong-length value gets a zero row) and each row's checksum is computed on
    a view of it; only the rows that fail are looked at one by one."""
    ids = np.asarray(user_ids, dtype=np.int64).reshape(-1)
    n = len(ids)
    if n <= 4:  # a few lookups: the batch pass's fixed numpy cost is most of their time
        return _open_few(ids, raw, size)
    blank = bytes(size)
    sized = [value is not None and len(value) == size for value in raw]
    buffer = b"".join([value if ok else blank for value, ok in zip(raw, sized)])
    out = np.frombuffer(buffer, dtype=np.uint8).reshape(n, size)  # read-only until masked
    view = memoryview(buffer)
    crc32 = zlib.crc32
    body = size - CHECKSUM_BYTES
    computed = np.fromiter(
        (crc32(view[i * size:i * size + body], start) if ok else 0
         for i, (ok, start) in enumerate(zip(sized, _id_crcs(ids)))), dtype=np.uint32,
        count=n)
    stored = out[:, body:].copy().view("<u4").reshape(n)
    found = (computed == stored) & np.array(sized, dtype=bool)
    corrupt = []
    if not found.all():
        for i in np.flatnonzero(~found).tolist():
            if raw[i] is not None:
                corrupt.append((int(ids[i]), record_problem(int(ids[i]), raw[i], size)))
        out = np.where(found[:, None], out, np.uint8(0))
    return OpenedRecords(out, found, tuple(corrupt))


def _open_few(ids: np.ndarray, raw: Sequence[bytes | None], size: int) -> OpenedRecords:
    if len(ids) == 1 and raw[0] is not None:  # one valid record: a view, no zero buffer
        user, value = int(ids[0]), raw[0]
        problem = record_problem(user, value, size)
        if problem is None:
            return OpenedRecords(np.frombuffer(value, dtype=np.uint8).reshape(1, size),
                                 np.ones(1, dtype=bool), ())
    out = np.zeros((len(ids), size), dtype=np.uint8)
    found = np.zeros(len(ids), dtype=bool)
    corrupt = []
    for i, (user, value) in enumerate(zip(ids.tolist(), raw)):
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
