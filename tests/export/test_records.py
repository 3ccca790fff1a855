"""Sealed records: payload || crc32(user id || payload); a truncated, foreign or flipped record
is reported and never returned; a snapshot's checksum does not depend on record order."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dv365.export.records import (CHECKSUM_BYTES, combine_checksums, open_records,
                                  record_digest, record_problem, record_size, records_checksum,
                                  seal)
from tests.export.golden import assert_golden

USERS = np.array([0, 1, 7, -3, 2**40 + 5, 2**63 - 1], dtype=np.int64)
PAYLOADS = (np.arange(6 * 10, dtype=np.int64).reshape(6, 10) * 37 % 256).astype(np.uint8)
SIZE = record_size(10)
GOLDEN_CHECKSUM = 0x9cbe153dbac4f6e0  # records_checksum(USERS, seal(USERS, PAYLOADS))


@pytest.fixture
def sealed():
    return seal(USERS, PAYLOADS)


def test_record_bytes_are_pinned(sealed):
    assert_golden("records.hex", sealed,
                  about="seal(test_records.USERS, test_records.PAYLOADS): payload then crc32 "
                        "LE, a user a line")


def test_a_record_is_the_payload_then_its_crc32(sealed):
    assert SIZE == 10 + CHECKSUM_BYTES == 14 and sealed.shape == (6, SIZE)
    assert np.array_equal(sealed[:, :10], PAYLOADS)


def test_snapshot_checksum_is_pinned(sealed):
    assert records_checksum(USERS, sealed) == GOLDEN_CHECKSUM


def test_open_returns_valid_records_in_the_order_asked(sealed):
    raw = [bytes(r) for r in sealed]
    order = [4, 0, 2]
    opened = open_records(USERS[order], [raw[i] for i in order], SIZE)
    assert opened.found.tolist() == [True] * 3 and opened.corrupt == ()
    assert np.array_equal(opened.records, sealed[order])
    assert np.array_equal(opened.payloads, PAYLOADS[order])


def test_a_missing_record_is_not_found_and_not_corrupt(sealed):
    opened = open_records(USERS[:2], [None, bytes(sealed[1])], SIZE)
    assert opened.found.tolist() == [False, True] and opened.corrupt == ()
    assert not opened.records[0].any()


@pytest.mark.parametrize("cut", [0, 1, SIZE - 1])
def test_a_truncated_record_is_corrupt(sealed, cut):
    value = bytes(sealed[2])[:cut]
    opened = open_records(USERS[2:3], [value], SIZE)
    assert opened.found.tolist() == [False] and not opened.records.any()
    assert opened.corrupt == ((7, f"{cut} bytes where a record has {SIZE}"),)


def test_a_longer_value_is_corrupt(sealed):
    problem = record_problem(7, bytes(sealed[2]) + b"\0", SIZE)
    assert problem == f"{SIZE + 1} bytes where a record has {SIZE}"


def test_a_foreign_record_fails_its_checksum(sealed):
    # user 1's valid record stored under user 7's key
    opened = open_records([7], [bytes(sealed[1])], SIZE)
    assert opened.found.tolist() == [False] and opened.corrupt == ((7, "checksum mismatch"),)


def test_every_flipped_byte_is_detected(sealed):
    record = bytes(sealed[3])
    for at in range(SIZE):
        for bit in (0x01, 0x80):
            bad = bytearray(record)
            bad[at] ^= bit
            assert record_problem(-3, bytes(bad), SIZE) == "checksum mismatch", (at, bit)
    assert record_problem(-3, record, SIZE) is None
    assert record_problem(-3, None, SIZE) == "missing"


def test_a_corrupt_record_among_good_ones_is_reported_with_its_user(sealed):
    raw = [bytes(r) for r in sealed]
    raw[4] = raw[4][:-1] + bytes([raw[4][-1] ^ 0xFF])
    opened = open_records(USERS, raw, SIZE)
    assert opened.found.tolist() == [True, True, True, True, False, True]
    assert opened.corrupt == ((2**40 + 5, "checksum mismatch"),)


def test_seal_refuses_payloads_that_do_not_match_the_users():
    with pytest.raises(ValueError, match="payloads"):
        seal(USERS[:2], PAYLOADS)
    with pytest.raises(ValueError, match="payloads"):
        seal(USERS[:1], PAYLOADS[0])


def test_the_digest_binds_the_user(sealed):
    assert record_digest(1, sealed[1].data) != record_digest(2, sealed[1].data)
    assert record_digest(1, bytes(sealed[1])) == record_digest(1, sealed[1].data)


@settings(max_examples=50, deadline=None)
@given(st.permutations(range(6)), st.integers(1, 5))
def test_the_snapshot_checksum_ignores_order_and_adds_over_shards(order, split):
    records = seal(USERS, PAYLOADS)
    shuffled = records_checksum(USERS[order], records[order])
    assert shuffled == GOLDEN_CHECKSUM
    first = records_checksum(USERS[order[:split]], records[order[:split]])
    rest = records_checksum(USERS[order[split:]], records[order[split:]])
    assert combine_checksums([first, rest]) == GOLDEN_CHECKSUM
    assert records_checksum(USERS[order[split:]], records[order[split:]], start=first) == \
        GOLDEN_CHECKSUM


def test_the_checksum_changes_with_any_record_or_user(sealed):
    changed = sealed.copy()
    changed[0, 0] ^= 1
    assert records_checksum(USERS, changed) != GOLDEN_CHECKSUM
    assert records_checksum(USERS[::-1], sealed) != GOLDEN_CHECKSUM  # records swapped users
    assert records_checksum(USERS[:0], sealed[:0]) == 0
