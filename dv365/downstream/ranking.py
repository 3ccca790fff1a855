"""The ranking control and its DV365 treatments: a multi-task DLRM whose user side is HSTU
over the user's recent events.

The DLRM is the backbone the foundation model trains in (:mod:`dv365.model.backbones.dlrm`:
dense arch, pairwise dot interaction of the sparse vectors, over arch with one output per
task); its user vectors are the :class:`~dv365.downstream.user_tower.UserTower`'s
representation and, with a ``features`` adapter (``linear``), the adapter's K extra sparse
embeddings. Control and treatment are built from the same seed in the same order, so the
parts they share start from the same weights.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from dv365.downstream.adapters.base import Adapter
from dv365.downstream.fit import dv365_input
from dv365.downstream.hstu_options import HstuOptions
from dv365.downstream.inputs import Batch
from dv365.downstream.tokens import ItemEmbeddings
from dv365.downstream.user_tower import DV365Input, UserTower
from dv365.model.backbones.dlrm import DLRM
from dv365.model.backbones.options import BackboneInputs, DLRMOptions, ItemFeature
from dv365.model.tasks import Task, predictions, task_losses


class HstuRanker(nn.Module):
    """``forward(batch, dv365) -> [B, T]``: one logit per binary task, one prediction per
    regression task (the task order of ``tasks``)."""

    def __init__(self, *, hstu: HstuOptions, dlrm: DLRMOptions, recent: int,
                 item_rows: dict[str, int], num_actions: int, num_media_types: int,
                 item_features: tuple[ItemFeature, ...], num_dense: int,
                 tasks: tuple[Task, ...], adapter: Adapter | None = None):
        super().__init__()
        items = ItemEmbeddings(hstu.dim, item_rows, num_actions=num_actions,
                               num_media_types=num_media_types)
        self.user = UserTower(hstu, items, recent=recent, adapter=adapter)
        extra = int(adapter.tokens) if adapter is not None and adapter.feeds == "features" \
            else 0
        inputs = BackboneInputs(1 + extra, hstu.dim, item_features, num_dense, tasks)
        self.backbone = DLRM(dlrm, inputs=inputs)
        self.register_buffer("dense_mean", torch.zeros(num_dense))
        self.register_buffer("dense_std", torch.ones(num_dense))
        self.task_bias = nn.Parameter(torch.zeros(len(tasks)))

    def forward(self, batch: Batch, dv365: DV365Input | None = None) -> torch.Tensor:
        user, features = self.user(batch.sequences, dv365)
        vectors = user.unsqueeze(1)
        if features is not None:
            vectors = torch.cat([vectors, features], dim=1)
        dense = (batch.dense - self.dense_mean) / self.dense_std
        return self.backbone(vectors, batch.sparse, dense) + self.task_bias


def ranking_loss(model: HstuRanker, tasks: tuple[Task, ...], alpha: float):
    """The training loss of ``model``: ``sum BCE + alpha * MSE`` over ``tasks``
    (:func:`dv365.model.tasks.task_losses`)."""

    def loss(batch: Batch, dv365: DV365Input | None) -> torch.Tensor:
        return task_losses(model(batch, dv365), batch.labels, tasks, alpha)[0]

    return loss


@torch.no_grad()
def rank_predictions(model: HstuRanker, tasks: tuple[Task, ...], builder, *, batch_size: int,
                     embeddings=None) -> np.ndarray:
    """Predictions ``[n, T]`` (float64; probabilities for binary tasks, the model's scale
    for regression) for every example of ``builder``, in its order."""
    model.eval()
    n = len(builder.examples)
    out = np.empty((n, len(tasks)), np.float64)
    for start in range(0, n, batch_size):
        rows = np.arange(start, min(n, start + batch_size))
        batch = builder(rows)
        out[rows] = predictions(model(batch, dv365_input(embeddings, batch)),
                                tasks).double().cpu().numpy()
    return out
