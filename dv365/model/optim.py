"""Optimizers: row-wise Adagrad for the embedding tables, Adam for the dense parts, and the
dense learning-rate schedule.

Row-wise Adagrad (fbgemm's default for recommendation tables) keeps one accumulator per row,
the running sum of the row gradient's mean square, instead of one per element: D times less
state, and only the rows a batch touched are read or written (sparse gradients). Its steps
already shrink as a row's accumulator grows, so only the dense optimizer gets a schedule
(:func:`lr_factor`): a linear warm-up, then a cosine or linear decay to a floor at the run's
last step.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn


class RowWiseAdagrad(torch.optim.Optimizer):
    """``acc[r] += mean(g[r]^2); w[r] -= lr * g[r] / (sqrt(acc[r]) + eps)`` for touched rows."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 0.05, eps: float = 1e-8):
        super().__init__(params, {"lr": lr, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 - torch.optim.Optimizer.step
        for group in self.param_groups:
            lr, eps = group["lr"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "sum" not in state:
                    state["sum"] = torch.zeros(p.shape[0], dtype=torch.float32,
                                               device=p.device)
                acc = state["sum"]
                grad = p.grad
                if grad.is_sparse:
                    grad = grad.coalesce()
                    rows, values = grad.indices()[0], grad.values()
                else:
                    rows = torch.nonzero(grad.abs().sum(1) > 0).squeeze(1)
                    values = grad.index_select(0, rows)
                if rows.numel() == 0:
                    continue
                acc.index_add_(0, rows, values.float().pow(2).mean(1))
                scale = lr / (acc.index_select(0, rows).sqrt() + eps)
                p.index_add_(0, rows, -(values * scale.unsqueeze(1).to(values.dtype)))
        return None


def table_parameters(model: nn.Module) -> list[torch.Tensor]:
    """Weights of the embedding tables (sparse or dense gradients), for the table optimizer."""
    return [m.weight for m in model.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag))]


def sparse_optimizer(params: list[torch.Tensor], sparse_cfg) -> torch.optim.Optimizer:
    """The configured table optimizer over ``params``."""
    if sparse_cfg.type == "rowwise_adagrad":
        return RowWiseAdagrad(params, lr=sparse_cfg.lr, eps=sparse_cfg.eps)
    if sparse_cfg.type == "adagrad":
        return torch.optim.Adagrad(params, lr=sparse_cfg.lr, eps=sparse_cfg.eps)
    # SparseAdam takes only sparse gradients: the trainer makes every table sparse
    return torch.optim.SparseAdam(params, lr=sparse_cfg.lr, eps=sparse_cfg.eps)


def build_optimizers(model: nn.Module, sparse_cfg, dense_cfg) -> dict[str, torch.optim.Optimizer]:
    """``{"sparse": ..., "dense": ...}`` over disjoint parameter sets (empty sets left out)."""
    sparse = table_parameters(model)
    ids = {id(p) for p in sparse}
    dense = [p for p in model.parameters() if id(p) not in ids and p.requires_grad]
    optimizers: dict[str, torch.optim.Optimizer] = {}
    if sparse:
        optimizers["sparse"] = sparse_optimizer(sparse, sparse_cfg)
    if dense:
        cls = torch.optim.AdamW if dense_cfg.type == "adamw" else torch.optim.Adam
        optimizers["dense"] = cls(dense, lr=dense_cfg.lr, weight_decay=dense_cfg.weight_decay)
    return optimizers


def lr_factor(step: int, total_steps: int, schedule) -> float:
    """The learning rate of step ``step + 1`` (``step`` steps done) over the configured one.

    Warm-up: ``(step + 1) / warmup_steps`` for the first ``warmup_steps`` steps. Then the decay
    runs from 1 at the end of the warm-up to ``min_lr_ratio`` at the last step of the run
    (``total_steps - 1`` done), on a half cosine or a line; ``none`` stays at 1.
    """
    warmup = schedule.warmup_steps
    if step < warmup:
        return (step + 1) / warmup
    if schedule.decay == "none":
        return 1.0
    progress = min(1.0, (step - warmup) / max(total_steps - 1 - warmup, 1))
    shape = 0.5 * (1 + math.cos(math.pi * progress)) if schedule.decay == "cosine" else \
        1 - progress
    return schedule.min_lr_ratio + (1 - schedule.min_lr_ratio) * shape


def build_schedulers(optimizers: dict[str, torch.optim.Optimizer], dense_cfg, total_steps: int
                     ) -> dict[str, torch.optim.lr_scheduler.LRScheduler]:
    """The dense optimizer's schedule (``{"dense": ...}``, empty without dense parameters);
    stepped once after every optimizer step. Its state is the number of steps done (the
    factor is a closure, so a resumed run with more ``steps`` decays over the new length)."""
    if "dense" not in optimizers:
        return {}
    schedule = dense_cfg.schedule
    return {"dense": torch.optim.lr_scheduler.LambdaLR(
        optimizers["dense"], lambda step: lr_factor(step, total_steps, schedule))}
