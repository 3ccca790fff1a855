"""Row-wise Adagrad: one accumulator per row, only touched rows move; the dense schedule."""

import math

import pytest
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


def schedule(**kw):
    from dv365.model.config import LearningRateSchedule

    return LearningRateSchedule(**kw)


def test_the_schedule_warms_up_linearly_then_decays_to_the_floor_at_the_last_step():
    from dv365.model.optim import lr_factor

    cosine = schedule(warmup_steps=4, decay="cosine", min_lr_ratio=0.1)
    assert [lr_factor(s, 104, cosine) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 104, cosine) == 1.0
    assert lr_factor(53, 104, cosine) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(
        math.pi * 49 / 99)))
    assert lr_factor(103, 104, cosine) == pytest.approx(0.1)  # the run's last step
    assert lr_factor(500, 104, cosine) == pytest.approx(0.1)  # and never back up
    linear = schedule(warmup_steps=0, decay="linear", min_lr_ratio=0.0)
    assert [lr_factor(s, 5, linear) for s in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]
    flat = schedule(warmup_steps=2, decay="none")
    assert [lr_factor(s, 9, flat) for s in range(4)] == [0.5, 1.0, 1.0, 1.0]


def test_only_the_dense_optimizer_is_scheduled_and_its_state_resumes(tmp_path):
    from dv365.model.config import DenseOptimizer, SparseOptimizer
    from dv365.model.optim import build_optimizers, build_schedulers

    def built():
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Embedding(4, 2), torch.nn.Linear(2, 1))
        dense = DenseOptimizer(lr=0.01, schedule=schedule(warmup_steps=2))
        optimizers = build_optimizers(model, SparseOptimizer(), dense)
        return model, optimizers, build_schedulers(optimizers, dense, total_steps=10)

    model, optimizers, schedulers = built()
    assert set(schedulers) == {"dense"}
    assert optimizers["dense"].param_groups[0]["lr"] == pytest.approx(0.005)
    for _ in range(3):
        optimizers["dense"].step()
        schedulers["dense"].step()
    saved = tmp_path / "s.pt"
    torch.save({"opt": optimizers["dense"].state_dict(),
                "schedule": schedulers["dense"].state_dict()}, saved)
    state = torch.load(saved, weights_only=True)  # plain numbers: a checkpoint can hold it
    _, again, resumed = built()
    again["dense"].load_state_dict(state["opt"])
    resumed["dense"].load_state_dict(state["schedule"])
    for _ in range(2):
        for s in (schedulers, resumed):
            s["dense"].optimizer.step()
            s["dense"].step()
    assert again["dense"].param_groups[0]["lr"] == optimizers["dense"].param_groups[0]["lr"]
    assert optimizers["sparse"].param_groups[0]["lr"] == 0.05  # Adagrad keeps its rate
