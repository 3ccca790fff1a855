"""The two-tower retrieval control's training loss and its catalogue metrics.

Training is the in-batch sampled softmax with the log-Q correction of Yi et al. 2019
("Sampling-Bias-Corrected Neural Modeling for Large Corpus Item Recommendations", RecSys):
the other positives of a batch are row ``i``'s negatives, and since popular items appear as
negatives more often than a full softmax would weigh them, each candidate's logit is lowered
by the log of its sampling probability. :class:`ItemFrequency` estimates that probability
from the training positives.

Evaluation scores every query against the whole catalogue by dot product and keeps, per
query, the target's rank (how many items score strictly higher), from which hits at ``k``
and NDCG at ``k`` follow; they stay per query so that
:func:`dv365.experiments.bootstrap.paired_mean_difference` can put an interval on the
difference between two models.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def sampled_softmax_logits(user: torch.Tensor, items: torch.Tensor, item_log_q: torch.Tensor,
                           *, temperature: float = 0.05, item_ids: torch.Tensor | None = None,
                           normalize: bool = True) -> torch.Tensor:
    """The ``[B, B]`` logits of :func:`sampled_softmax_loss`: row ``i`` is user ``i``,
    column ``j`` the batch's ``j``-th positive item, the positive of row ``i`` on the diagonal.

    ``logits[i, j] = <u_i, v_j> / temperature - item_log_q[j]``, with ``u`` and ``v``
    scaled to unit length first when ``normalize`` (the score is then a cosine similarity in
    ``[-1, 1]`` and ``temperature`` sets how sharp the softmax is). With ``item_ids``, a
    column ``j != i`` that holds the same item as row ``i``'s positive is ``-inf``: another
    occurrence of the positive in the batch is not a negative.
    """
    if user.ndim != 2 or items.shape != user.shape:
        raise ValueError(f"user {list(user.shape)} and items {list(items.shape)} must both "
                         "be [B, d]")
    b = user.shape[0]
    if item_log_q.shape != (b,):
        raise ValueError(f"item_log_q must be [{b}], got {list(item_log_q.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if normalize:
        user, items = F.normalize(user, dim=-1), F.normalize(items, dim=-1)
    logits = user @ items.T / temperature - item_log_q.to(user.dtype)[None, :]
    if item_ids is not None:
        if item_ids.shape != (b,):
            raise ValueError(f"item_ids must be [{b}], got {list(item_ids.shape)}")
        duplicate = item_ids[:, None] == item_ids[None, :]
        duplicate.fill_diagonal_(False)
        logits = logits.masked_fill(duplicate, float("-inf"))
    return logits


def sampled_softmax_loss(user: torch.Tensor, items: torch.Tensor, item_log_q: torch.Tensor,
                         *, temperature: float = 0.05, item_ids: torch.Tensor | None = None,
                         normalize: bool = True) -> torch.Tensor:
    """In-batch sampled softmax with log-Q correction (Yi et al. 2019): the cross-entropy of
    :func:`sampled_softmax_logits` against the diagonal, averaged over the ``B`` rows.

    ``user`` and ``items`` are ``[B, d]`` (row ``i`` of ``items`` is user ``i``'s positive);
    ``item_log_q`` ``[B]`` is each positive's log sampling probability
    (:meth:`ItemFrequency.log_q`); ``item_ids`` ``[B]``, when given, masks the duplicates of
    a row's positive out of its negatives. Returns a scalar.
    """
    logits = sampled_softmax_logits(user, items, item_log_q, temperature=temperature,
                                    item_ids=item_ids, normalize=normalize)
    return F.cross_entropy(logits, torch.arange(logits.shape[0], device=logits.device))


class ItemFrequency:
    """Each item's probability of being a batch's in-batch candidate, counted over the
    training positives: ``Q(j) = count(j) / total``.

    With batches drawn from the training positives, ``Q(j)`` is the chance that a given
    column holds item ``j``; the chance that the batch holds it at all is about ``B Q(j)``,
    and the factor ``B`` shared by every column cancels in the softmax. An item never seen
    (or seen fewer than ``floor`` times) counts ``floor`` times, so its log-Q is finite:
    ``log(floor / total)``.

    This counts over a fixed training set, which makes it exact and deterministic. Yi et
    al.'s production variant estimates the same probability while streaming, from the
    average number of steps between two sightings of an item's hash bucket.
    """

    def __init__(self, item_ids: np.ndarray | torch.Tensor, *, floor: float = 1.0):
        ids = (item_ids.detach().cpu().numpy() if isinstance(item_ids, torch.Tensor)
               else np.asarray(item_ids))
        if ids.ndim != 1 or ids.size == 0 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"item_ids must be a non-empty 1-D integer array, got "
                             f"{ids.dtype} {list(ids.shape)}")
        if not floor > 0:
            raise ValueError(f"floor must be positive, got {floor}")
        unique, counts = np.unique(ids.astype(np.int64), return_counts=True)
        self.total = int(ids.size)
        self.floor = float(floor)
        self.unseen_log_q = math.log(self.floor / self.total)
        self._ids = torch.from_numpy(unique)
        self._log_q = torch.from_numpy(np.log(np.maximum(counts, self.floor) / self.total)
                                       .astype(np.float32))
        self._on_device: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def log_q(self, item_ids: np.ndarray | torch.Tensor) -> torch.Tensor:
        """``log Q`` of each id (float32, the shape of ``item_ids``, on its device)."""
        query = torch.as_tensor(item_ids).to(torch.int64)
        ids, log_q = self._tables(query.device)
        at = torch.searchsorted(ids, query).clamp_(max=ids.numel() - 1)
        return torch.where(ids[at] == query, log_q[at],
                           torch.full_like(log_q[at], self.unseen_log_q))

    def _tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The sorted ids and their log-Q on ``device``, copied there once."""
        if device not in self._on_device:
            self._on_device[device] = (self._ids.to(device), self._log_q.to(device))
        return self._on_device[device]


def target_ranks(user: np.ndarray | torch.Tensor, catalogue: np.ndarray | torch.Tensor,
                 targets: np.ndarray | torch.Tensor, *, chunk: int = 4096) -> np.ndarray:
    """Per query, how many catalogue items score strictly higher than its target (int64
    ``[Q]``; 0 is the top), the score being the dot product.

    ``user`` is ``[Q, d]``, ``catalogue`` ``[I, d]``, ``targets`` ``[Q]`` row indices into
    ``catalogue``. Items tied with the target do not count against it (the target wins every
    tie). The catalogue is scored brute force, ``chunk`` queries at a time, so memory stays
    at ``chunk x I`` scores; it runs on the inputs' device, numpy inputs on the CPU.
    """
    u, items = torch.as_tensor(user), torch.as_tensor(catalogue)
    t = torch.as_tensor(targets, device=u.device).to(torch.int64)
    if u.ndim != 2 or items.ndim != 2 or u.shape[1] != items.shape[1]:
        raise ValueError(f"user {list(u.shape)} and catalogue {list(items.shape)} must be "
                         "[Q, d] and [I, d]")
    if t.shape != (u.shape[0],):
        raise ValueError(f"targets must be [{u.shape[0]}], got {list(t.shape)}")
    if t.numel() and not bool(((t >= 0) & (t < items.shape[0])).all()):
        raise ValueError(f"targets must be row indices into a catalogue of {items.shape[0]}")
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    dtype = torch.promote_types(u.dtype, items.dtype)
    u, items = u.to(dtype), items.to(device=u.device, dtype=dtype)
    ranks = torch.empty(u.shape[0], dtype=torch.int64, device=u.device)
    with torch.no_grad():
        for lo in range(0, u.shape[0], chunk):
            scores = u[lo:lo + chunk] @ items.T
            # The target's score is read from the same product, so it ties with itself
            # exactly rather than differing from a separate dot product by rounding.
            own = scores.gather(1, t[lo:lo + chunk, None])
            ranks[lo:lo + chunk] = (scores > own).sum(1)
    return ranks.cpu().numpy()


def hit_rates(user: np.ndarray | torch.Tensor, catalogue: np.ndarray | torch.Tensor,
              targets: np.ndarray | torch.Tensor, ks: tuple[int, ...] = (1, 10), *,
              chunk: int = 4096) -> dict[int, np.ndarray]:
    """Per query and per ``k`` in ``ks``, whether the target is in the top ``k`` of the full
    catalogue by dot product: ``{k: bool [Q]}`` (the mean is the hit rate, recall at ``k``
    with one target).

    A tie counts for the target: it is a hit when fewer than ``k`` items score strictly
    higher (:func:`target_ranks`, whose arguments these are).
    """
    if any(k < 1 for k in ks):
        raise ValueError(f"every k must be at least 1, got {tuple(ks)}")
    ranks = target_ranks(user, catalogue, targets, chunk=chunk)
    return {int(k): ranks < k for k in ks}


def ndcg_at(user: np.ndarray | torch.Tensor, catalogue: np.ndarray | torch.Tensor,
            targets: np.ndarray | torch.Tensor, k: int = 10, *, chunk: int = 4096
            ) -> np.ndarray:
    """Per query, NDCG at ``k`` with the target the one relevant item: ``1 / log2(rank + 2)``
    when its rank (:func:`target_ranks`, ties for the target) is below ``k``, else 0
    (float64 ``[Q]``)."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    ranks = target_ranks(user, catalogue, targets, chunk=chunk)
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)
