"""Slice tables from the IR: EBC grouping, IR slice order, SUM of normalized weights = mean."""

import torch
from torchrec import KeyedJaggedTensor

from dv365.model.tables import SliceTables
from tests.model.conftest import tiny_spec


def test_one_table_per_ir_table_with_its_slices_as_features():
    ir = tiny_spec()
    tables = SliceTables(ir)
    configs = {c.name: c.feature_names for c in tables.ebc.embedding_bag_configs()}
    assert configs == {t.name: [s.name for s in ir.slices_of_table(t.name)] for t in ir.tables}


def test_output_is_in_ir_slice_order_and_pools_the_mean():
    ir = tiny_spec()
    tables = SliceTables(ir)
    names, B = ir.slice_names, 2
    # user 0: slice s holds rows [s, s + 1] with weights 1/2 each; user 1: empty everywhere.
    lengths, values, weights = [], [], []
    for s in range(len(names)):
        lengths += [2, 0]
        values += [s, s + 1]
        weights += [0.5, 0.5]
    kjt = KeyedJaggedTensor(keys=list(names), values=torch.tensor(values),
                            lengths=torch.tensor(lengths), weights=torch.tensor(weights))
    out = tables(kjt)
    assert out.shape == (B, len(names), ir.dim)
    for s, name in enumerate(names):
        w = tables.ebc.embedding_bags[ir.slices[s].table].weight
        torch.testing.assert_close(out[0, s], (w[s] + w[s + 1]) / 2)
    assert torch.count_nonzero(out[1]) == 0


def test_small_tables_get_dense_gradients_large_ones_sparse_with_equal_values():
    ir = tiny_spec()
    names = ir.slice_names
    kjt = KeyedJaggedTensor(keys=list(names), values=torch.arange(len(names)) % 7,
                            lengths=torch.ones(len(names), dtype=torch.int64),
                            weights=torch.ones(len(names)))
    grads = {}
    for min_rows in (0, 1 << 20):
        torch.manual_seed(0)
        tables = SliceTables(ir, sparse_min_rows=min_rows)
        (tables(kjt) * torch.arange(ir.dim)).sum().backward()
        grads[min_rows] = tables.ebc.embedding_bags["media"].weight.grad
    assert grads[0].is_sparse and not grads[1 << 20].is_sparse
    torch.testing.assert_close(grads[0].to_dense(), grads[1 << 20])
