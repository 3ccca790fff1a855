"""Row-wise Adagrad: one accumulator per row, only touched rows move."""

import torch

from dv365.model.optim import RowWiseAdagrad


def test_rowwise_adagrad_matches_the_formula_and_leaves_other_rows():
    table = torch.nn.Embedding(5, 3, sparse=True)
    before = table.weight.detach().clone()
    opt = RowWiseAdagrad(table.parameters(), lr=0.1, eps=1e-8)
    table(torch.tensor([1, 3, 3])).sum().backward()
    opt.step()
    grad = torch.zeros(5, 3)
    grad[1], grad[3] = 1.0, 2.0  # row 3 looked up twice
    acc = grad.pow(2).mean(1)
    expected = before - 0.1 * grad / (acc.sqrt() + 1e-8).unsqueeze(1)
    torch.testing.assert_close(table.weight.detach(), expected)
    assert torch.equal(table.weight[0], before[0]) and torch.equal(table.weight[4], before[4])
    assert opt.state[table.weight]["sum"].shape == (5,)


def test_dense_and_sparse_gradients_step_alike():
    weights = []
    for sparse in (True, False):
        torch.manual_seed(0)
        table = torch.nn.Embedding(6, 2, sparse=sparse)
        opt = RowWiseAdagrad(table.parameters(), lr=0.3)
        for ids in ([0, 2], [2, 5, 5]):
            table(torch.tensor(ids)).square().sum().backward()
            opt.step()
            opt.zero_grad()
        weights.append(table.weight.detach())
    torch.testing.assert_close(weights[0], weights[1])
