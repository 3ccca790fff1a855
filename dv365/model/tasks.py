"""The backbone's tasks and its loss: ``L = sum_k BCE_k + alpha * sum_r MSE_r``.

Binary tasks (like, comment, share, ...) get one logit each and a binary cross-entropy loss;
regression tasks (watch time) get one prediction each and a mean squared error, weighted by
``alpha``. A task's label column in the examples is ``label_<task>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch
import torch.nn.functional as F

TaskKind = Literal["binary", "regression"]


@dataclass(frozen=True)
class Task:
    """One prediction target of the backbone."""

    name: str
    kind: TaskKind
    # Regression labels are modeled on log1p scale when set (watch time is heavy-tailed).
    log1p: bool = False

    def target(self, labels: torch.Tensor) -> torch.Tensor:
        """The label on the scale the model predicts."""
        return torch.log1p(labels.clamp_min(0)) if self.log1p else labels


def task_losses(outputs: torch.Tensor, labels: torch.Tensor, tasks: Sequence[Task],
                alpha: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The total loss and each task's loss.

    ``outputs`` and ``labels`` are ``[B, T]`` in the order of ``tasks``: logits and 0/1 labels
    for binary tasks, predictions and raw labels for regression tasks.
    """
    per_task: dict[str, torch.Tensor] = {}
    total = outputs.new_zeros(())
    for k, task in enumerate(tasks):
        if task.kind == "binary":
            loss = F.binary_cross_entropy_with_logits(outputs[:, k], labels[:, k])
            total = total + loss
        else:
            loss = F.mse_loss(outputs[:, k], task.target(labels[:, k]))
            total = total + alpha * loss
        per_task[task.name] = loss
    return total, per_task


def predictions(outputs: torch.Tensor, tasks: Sequence[Task]) -> torch.Tensor:
    """Probabilities for binary tasks, values (on the model's scale) for regression tasks."""
    cols = [torch.sigmoid(outputs[:, k]) if t.kind == "binary" else outputs[:, k]
            for k, t in enumerate(tasks)]
    return torch.stack(cols, dim=1)
