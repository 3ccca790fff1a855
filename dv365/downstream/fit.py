"""Training a downstream model: shuffled batches of examples, the model's loss, the
foundation's optimizers.

The loop is the same for every downstream model: batches of ``batch_size`` examples in an
order drawn from ``seed`` (and the epoch), so that a control and its treatments with the same
seed see the same batches in the same order; the id tables step with the sparse optimizer
(row-wise Adagrad by default), everything else with the dense one, the learning rate on its
schedule (:mod:`dv365.model.optim`). The DV365 input, when the model reads one, comes from
the store one batch at a time, the way production reads it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from dv365.downstream.inputs import Batch, BatchBuilder
from dv365.downstream.store_input import DailyEmbeddings, StoreEmbeddings
from dv365.downstream.user_tower import DV365Input
from dv365.errors import UsageError
from dv365.model.config import Optimizers
from dv365.model.optim import build_optimizers, build_schedulers

LossFunction = Callable[[Batch, "DV365Input | None"], torch.Tensor]
EmbeddingSource = StoreEmbeddings | DailyEmbeddings
"""Where a model's DV365 input comes from: one pinned snapshot, or the day's snapshot."""


@dataclass(frozen=True)
class FitResult:
    """Steps taken, examples seen, the mean loss of the last 10% of the steps, and the
    training throughput (examples/s, the store reads included)."""

    steps: int
    examples: int
    final_loss: float
    examples_per_s: float


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Example indices per batch: a permutation of ``range(n)`` drawn from (seed, epoch),
    cut every ``batch_size``."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def dv365_input(embeddings: EmbeddingSource | None, batch: Batch) -> DV365Input | None:
    """The batch's users' vectors and found mask from the store (None without one)."""
    return None if embeddings is None else embeddings.for_batch(batch)


def fit(model: nn.Module, loss: LossFunction, builder: BatchBuilder, *, batch_size: int,
        epochs: int, optimizer: Optimizers, seed: int,
        embeddings: EmbeddingSource | None = None,
        advance: Callable[[int], object] | None = None) -> FitResult:
    """Train ``model`` on every example of ``builder`` for ``epochs`` epochs."""
    n = len(builder.examples)
    batches = [b for e in range(epochs) for b in epoch_batches(n, batch_size, seed, e)]
    optimizers = build_optimizers(model, optimizer.sparse, optimizer.dense)
    schedulers = build_schedulers(optimizers, optimizer.dense, len(batches))
    losses: list[float] = []
    seconds, seen = 0.0, 0
    model.train()
    for step, rows in enumerate(batches, 1):
        started = time.perf_counter()
        batch = builder(rows)
        value = loss(batch, dv365_input(embeddings, batch))
        for opt in optimizers.values():
            opt.zero_grad(set_to_none=True)
        value.backward()
        for opt in optimizers.values():
            opt.step()
        for schedule in schedulers.values():
            schedule.step()
        seconds += time.perf_counter() - started
        loss_value = float(value.detach())
        if not math.isfinite(loss_value):
            raise UsageError(f"the loss became {loss_value} at step {step}",
                             hint="lower the optimizer learning rates")
        losses.append(loss_value)
        seen += len(rows)
        if advance is not None:
            advance(1)
    tail = losses[-max(1, len(losses) // 10):] if losses else [math.nan]
    return FitResult(len(batches), seen, float(np.mean(tail)), seen / max(seconds, 1e-9))


def steps_of(n: int, batch_size: int, epochs: int) -> int:
    """Steps :func:`fit` takes on ``n`` examples."""
    return epochs * math.ceil(n / batch_size)
