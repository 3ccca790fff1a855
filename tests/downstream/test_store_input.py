"""StoreEmbeddings: a real LMDB store, int4 records decoded, one version for the whole run;
DailyEmbeddings: each request reads the version current at its time."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dv365.downstream.adapters.build import build_adapter
from dv365.downstream.store_input import DailyEmbeddings, StoreEmbeddings
from dv365.errors import NotFoundError
from dv365.stores import open_store
from tests.stores.snapshots import vectors_of, write_snapshot

ROWS, DIM = 3, 8
USERS = np.array([2, 5, 7, 11], dtype=np.int64)
INT4_STEP = 0.02  # a row spans 7/64; int4 has 15 steps (and an fp16 scale and bias)


@pytest.fixture
def store_uri(tmp_path):
    uri = f"lmdb://{tmp_path / 'store'}"
    with open_store(uri) as store:
        write_snapshot(store, USERS, codec="int4", rows=ROWS, dim=DIM, at_ms=1_700_000_000_000)
    return uri


def test_a_batch_reads_the_decoded_int4_vectors_and_the_found_mask(store_uri):
    with StoreEmbeddings(store_uri) as embeddings:
        assert (embeddings.rows, embeddings.dim, embeddings.codec) == (ROWS, DIM, "int4")
        vectors, found = embeddings(torch.tensor([5, 3, 11]))  # 3 was never exported
    assert vectors.dtype == torch.float32 and vectors.shape == (3, ROWS, DIM)
    assert found.dtype == torch.bool and found.tolist() == [True, False, True]
    expected = vectors_of(np.array([5, 11]), ROWS, DIM)
    assert torch.allclose(vectors[found], expected, atol=INT4_STEP)
    assert not torch.equal(vectors[found], expected)  # int4, not the floats themselves


def test_the_version_open_at_the_start_is_read_for_the_whole_run(store_uri):
    with StoreEmbeddings(store_uri) as embeddings:
        first = embeddings.version
        before, _ = embeddings(USERS)
        with open_store(store_uri) as store:
            newer = write_snapshot(store, USERS, tag=100.0, codec="int4", rows=ROWS, dim=DIM,
                                   at_ms=1_700_000_100_000)
            assert store.current_version() == newer.id != first
        after, found = embeddings(USERS)
        assert embeddings.version == first
    assert found.all() and torch.equal(after, before)
    with StoreEmbeddings(store_uri) as fresh:  # a new run reads the new snapshot
        assert fresh.version == newer.id
        assert fresh(USERS[:1])[0].min() > 100


def test_a_version_can_be_named(store_uri):
    with open_store(store_uri) as store:
        first = store.current_version()
        write_snapshot(store, USERS, tag=100.0, codec="int4", rows=ROWS, dim=DIM,
                       at_ms=1_700_000_100_000)
    with StoreEmbeddings(store_uri, version=first) as embeddings:
        assert embeddings.version == first and embeddings(USERS[:1])[0].max() < 100
    with pytest.raises(NotFoundError, match="no version 'nope'"):
        StoreEmbeddings(store_uri, version="nope")


def test_a_store_without_a_published_version_is_an_error(tmp_path):
    with pytest.raises(NotFoundError, match="no current version"):
        StoreEmbeddings(f"lmdb://{tmp_path / 'empty'}")


def test_store_vectors_train_an_adapter_with_missing_users(store_uri):
    with StoreEmbeddings(store_uri, device="cpu") as embeddings:
        adapter = build_adapter({"type": "linear", "outputs": 2}, num_vectors=embeddings.rows,
                                dim=embeddings.dim, out_dim=4)
        vectors, found = embeddings([2, 4, 7])
    out = adapter(vectors, found)
    assert out.shape == (3, 2, 4) and out.device.type == "cpu"
    out.square().sum().backward()
    assert adapter.missing.grad.abs().sum() > 0
    assert adapter.projection.linear.weight.grad.abs().sum() > 0


def test_a_daily_source_reads_for_each_request_the_version_current_at_its_time(store_uri):
    day = 86_400_000
    with open_store(store_uri) as store:
        first = store.current_version()
        second = write_snapshot(store, USERS, tag=100.0, codec="int4", rows=ROWS, dim=DIM,
                                at_ms=1_700_000_000_000 + day).id
    t0 = 1_700_000_000_000
    with DailyEmbeddings(store_uri, [(t0, first), (t0 + day, second)]) as daily:
        users = np.array([5, 5, 11, 3])
        times = np.array([t0, t0 + day, t0 + day - 1, t0 + 2 * day])
        vectors, found = daily(users, times)
        assert found.tolist() == [True, True, True, False]
        with StoreEmbeddings(store_uri, version=first) as a, \
                StoreEmbeddings(store_uri, version=second) as b:
            assert torch.equal(vectors[0], a(users[:1])[0][0])
            assert torch.equal(vectors[1], b(users[1:2])[0][0])
            assert torch.equal(vectors[2], a(users[2:3])[0][0])
        with pytest.raises(ValueError, match="before the first snapshot"):
            daily(users[:1], np.array([t0 - 1]))
    with pytest.raises(ValueError, match="increasing"):
        DailyEmbeddings(store_uri, [(t0, first), (t0, second)])
