"""The jagged output: a key-major layout validated at the boundary, a KJT that pools right."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dv365.errors import DataError
from dv365.kernels.fused import pool_fused
from dv365.kernels.jagged import slice_jagged
from dv365.kernels.jagged_slices import JaggedSlices, validate


def test_jagged_validation_catches_a_broken_layout(small_case):
    ir, store, users, times, tables = small_case
    jag = slice_jagged(ir, store, users, times, "cpu")
    limits = [ir.table(s.table).num_rows for s in ir.slices]
    short = dataclasses.replace(jag, values=jag.values[:-1], weights=jag.weights[:-1])
    with pytest.raises(DataError, match="lengths sum to"):
        validate(short, limits)
    big = jag.values.clone()
    big[0] = 10**9
    with pytest.raises(DataError, match="out of its table"):
        validate(dataclasses.replace(jag, values=big), limits)
    assert isinstance(validate(jag, limits), JaggedSlices)


def test_jagged_validation_checks_each_row_against_its_own_slice_table(small_case):
    # A row inside the largest table but outside its own slice's table, a negative row and a
    # non-finite weight are each caught, and named by position.
    ir, store, users, times, tables = small_case
    jag = slice_jagged(ir, store, users, times, "cpu")
    limits = [ir.table(s.table).num_rows for s in ir.slices]
    B = jag.counts.shape[0]
    starts = torch.cumsum(jag.lengths, 0) - jag.lengths
    per_key = jag.lengths.view(len(limits), B).sum(1)
    small = next(k for k in range(len(limits))
                 if per_key[k] > 0 and limits[k] < max(limits))
    first_bag = small * B + int(torch.nonzero(jag.lengths[small * B:(small + 1) * B])[0])
    at = int(starts[first_bag])
    wrong = jag.values.clone()
    wrong[at] = limits[small]
    with pytest.raises(DataError, match=f"row {limits[small]} out of its table") as err:
        validate(dataclasses.replace(jag, values=wrong), limits)
    assert err.value.where == f"values[{at}]"
    negative = jag.values.clone()
    negative[-1] = -1
    with pytest.raises(DataError, match="row -1 out of its table"):
        validate(dataclasses.replace(jag, values=negative), limits)
    nan = jag.weights.clone()
    nan[0] = float("nan")
    with pytest.raises(DataError, match="not finite"):
        validate(dataclasses.replace(jag, weights=nan), limits)
    counts = jag.counts.clone()
    counts[0, 0] += 1
    with pytest.raises(DataError, match="disagree with counts"):
        validate(dataclasses.replace(jag, counts=counts), limits)


def test_jagged_is_a_valid_kjt_that_pools_like_the_fused_output(small_case):
    from torchrec.modules.embedding_configs import EmbeddingBagConfig, PoolingType
    from torchrec.modules.embedding_modules import EmbeddingBagCollection

    ir, store, users, times, tables = small_case
    jag = slice_jagged(ir, store, users, times, "cpu")
    kjt = jag.kjt
    assert kjt.keys() == list(ir.slice_names)
    ebc = EmbeddingBagCollection(tables=[
        EmbeddingBagConfig(name=t.name, embedding_dim=t.dim, num_embeddings=t.num_rows,
                           feature_names=[s.name for s in ir.slices_of_table(t.name)],
                           pooling=PoolingType.SUM)
        for t in ir.tables], is_weighted=True)
    with torch.no_grad():
        for t in ir.tables:
            ebc.embedding_bags[t.name].weight.copy_(torch.from_numpy(tables[t.name]))
    pooled = ebc(kjt).to_dict()
    fused, _ = pool_fused(ir, store, users, times, tables, "cpu")
    for s, name in enumerate(ir.slice_names):
        torch.testing.assert_close(pooled[name], fused[:, s], rtol=1e-4, atol=2e-5)


def test_bag_reads_one_users_slice(small_case):
    ir, store, users, times, _ = small_case
    jag = slice_jagged(ir, store, users, times, "cpu")
    b, s = 1, 4
    rows, weights = jag.bag(b, s)
    assert len(rows) == int(jag.counts[b, s]) == len(weights)
