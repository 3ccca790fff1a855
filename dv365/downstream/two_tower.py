"""The retrieval control and its DV365 treatments: a two-tower model.

* **User tower**: the :class:`~dv365.downstream.user_tower.UserTower` over the user's recent
  events (with the DV365 adapter of a treatment: ``gatenet`` combines, a ``features``
  adapter such as ``linear`` adds its vectors to the user representation), then an MLP and
  one linear head per task: ``u_k [d]``.
* **Item tower**: the item's id and media-type embeddings (the id tables are the user
  tower's), then an MLP: ``v [d]``.

Trained per task with in-batch sampled softmax and log-Q correction over the batch's
positives of that task (:func:`dv365.downstream.retrieval.sampled_softmax_loss`); scored by
Hit Rate@k of the engaged item among the whole catalogue (:func:`retrieval.hit_rates`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dv365.downstream.adapters.base import Adapter
from dv365.downstream.catalogue import Catalogue
from dv365.downstream.fit import dv365_input
from dv365.downstream.hstu_options import HstuOptions
from dv365.downstream.inputs import Batch
from dv365.downstream.retrieval import ItemFrequency, hit_rates, sampled_softmax_loss
from dv365.downstream.tokens import ItemEmbeddings
from dv365.downstream.user_tower import DV365Input, UserTower


def mlp(width: int, hidden: tuple[int, ...]) -> nn.Sequential:
    """ReLU layers of ``hidden`` widths, then a linear map back to ``width``."""
    layers: list[nn.Module] = []
    last = width
    for h in hidden:
        layers += [nn.Linear(last, h), nn.ReLU()]
        last = h
    layers.append(nn.Linear(last, width))
    return nn.Sequential(*layers)


class TwoTower(nn.Module):
    """``users(batch, dv365) -> [B, tasks, d]`` and ``items(features) -> [I, d]``."""

    def __init__(self, *, hstu: HstuOptions, recent: int, item_rows: dict[str, int],
                 num_actions: int, num_media_types: int, num_tasks: int,
                 hidden: tuple[int, ...] = (128,), adapter: Adapter | None = None):
        super().__init__()
        d = hstu.dim
        self.item_embeddings = ItemEmbeddings(d, item_rows, num_actions=num_actions,
                                              num_media_types=num_media_types)
        self.user = UserTower(hstu, self.item_embeddings, recent=recent, adapter=adapter)
        self.user_mlp = mlp(d, hidden)
        self.heads = nn.Parameter(torch.eye(d).repeat(num_tasks, 1, 1)
                                  + 0.01 * torch.randn(num_tasks, d, d))
        self.item_mlp = mlp(d, hidden)

    def users(self, batch: Batch, dv365: DV365Input | None = None) -> torch.Tensor:
        user, features = self.user(batch.sequences, dv365)
        if features is not None:
            user = user + features.sum(dim=1)
        trunk = self.user_mlp(user)
        return torch.einsum("bd,tde->bte", trunk, self.heads)

    def items(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.item_mlp(self.item_embeddings.items(features))


def retrieval_loss(model: TwoTower, catalogue: Catalogue, frequencies: list[ItemFrequency],
                   *, temperature: float):
    """Per task ``k``, the in-batch sampled softmax with log-Q correction over the batch's
    examples whose label ``k`` is 1 (their items are the candidates), summed over tasks.
    ``frequencies[k]`` estimates task ``k``'s candidate distribution."""
    features: dict[str, torch.Tensor] = {}

    def loss(batch: Batch, dv365: DV365Input | None) -> torch.Tensor:
        users = model.users(batch, dv365)
        target = batch.target
        if not features:  # the catalogue's features, on the batch's device once
            features.update({k: torch.from_numpy(v).to(target.device)
                             for k, v in catalogue.features.items()})
        rows = {k: v[target] for k, v in features.items()}
        items = model.items(rows)
        # A batch without two positives of any task still gives a loss to step on (zero).
        total = 0.0 * users.sum()
        for k, frequency in enumerate(frequencies):
            positive = batch.labels[:, k] > 0.5
            if int(positive.sum()) < 2:  # one candidate is no softmax
                continue
            ids = target[positive]
            total = total + sampled_softmax_loss(users[positive, k], items[positive],
                                                 frequency.log_q(ids), item_ids=ids,
                                                 temperature=temperature)
        return total

    return loss


@torch.no_grad()
def catalogue_vectors(model: TwoTower, catalogue: Catalogue, *, device: torch.device,
                      chunk: int = 65_536) -> torch.Tensor:
    """The item tower over the whole catalogue, unit length, ``[I, d]``."""
    model.eval()
    out = []
    for lo in range(0, len(catalogue), chunk):
        rows = {k: torch.from_numpy(v[lo:lo + chunk]).to(device)
                for k, v in catalogue.features.items()}
        out.append(F.normalize(model.items(rows), dim=-1))
    return torch.cat(out)


@torch.no_grad()
def retrieval_hits(model: TwoTower, catalogue: Catalogue, builder, *, num_tasks: int,
                   batch_size: int, ks: tuple[int, ...] = (1, 10), embeddings=None
                   ) -> list[dict[int, np.ndarray]]:
    """Per task, per k: whether each held-out example with that task's label 1 has its item
    in the top k of the catalogue (``bool [Q_k]``, the examples in the builder's order)."""
    model.eval()
    items = catalogue_vectors(model, catalogue, device=builder.device)
    labels = builder.examples.labels
    out: list[dict[int, np.ndarray]] = []
    queries: list[list[torch.Tensor]] = [[] for _ in range(num_tasks)]
    targets: list[list[torch.Tensor]] = [[] for _ in range(num_tasks)]
    n = len(builder.examples)
    for start in range(0, n, batch_size):
        rows = np.arange(start, min(n, start + batch_size))
        positive = labels[rows] > 0.5
        if not positive.any():
            continue
        batch = builder(rows)
        users = F.normalize(model.users(batch, dv365_input(embeddings, batch)), dim=-1)
        for k in range(num_tasks):
            mask = torch.from_numpy(positive[:, k]).to(users.device)
            queries[k].append(users[mask, k])
            targets[k].append(batch.target[mask])
    for k in range(num_tasks):
        if not queries[k]:
            out.append({int(x): np.zeros(0, bool) for x in ks})
            continue
        # Scores of `chunk` queries against the whole catalogue at a time: about 1 GB.
        chunk = max(1, (1 << 28) // max(len(catalogue), 1))
        out.append(hit_rates(torch.cat(queries[k]), items, torch.cat(targets[k]), ks,
                             chunk=chunk))
    return out
