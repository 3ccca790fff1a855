"""Next-item prediction with HSTU on MovieLens's shape: the check that
:class:`dv365.downstream.hstu.Hstu` learns what the HSTU paper's MovieLens-1M protocol
(Zhai et al. 2024, section 4.1.1) measures.

The protocol, in shape:

* **Sequences.** Each user's events in time order (the UniTi data ``dv365 import movielens``
  writes; events of one second keep the ratings file's order), every rating one event
  whatever its stars. Items are coded ``0 .. I - 1`` over the movies that appear in the
  events: the catalogue.
* **Leave-one-out.** The last event is the test target, the second-to-last the validation
  target, the rest is training. Users with fewer than three events are left out. Every
  sequence the encoder reads is the most recent ``max_len`` events before its target.
* **Model.** An item embedding table ``E [I, d]``; the input of event ``t`` at position ``p``
  (from the oldest kept event) is ``dropout(sqrt(d) E[item_t] + P[p])``; the encoder's
  output is L2-normalised, and so are the item embeddings it is scored against, as in the
  reference's MovieLens setting (``l2_norm`` user and item embeddings).
* **Training.** Autoregressive on the training part: output row ``i`` predicts item
  ``i + 1``, the last row's request time being its target's time (so every row's time
  bias sees its target's time, as the reference's timestamps extended with the target's
  do). Sampled softmax with temperature ``tau``: the target against ``negatives`` items
  drawn uniformly from the catalogue once per step, shared by the batch's rows, a
  negative equal to the row's target masked out.
* **Evaluation.** The last output row scores the whole catalogue by dot product (brute
  force); the target's rank is one plus the number of items scored strictly higher. HR@k
  is the share of targets with rank <= k, NDCG@10 the mean of ``1 / log2(rank + 1)`` over
  ranks <= 10. Nothing is excluded by default; the reference's evaluation
  (``eval_metrics_v2_from_tensors``, ``filter_invalid_ids=True``) removes the items of the
  user's history from the ranking, which ``exclude_history=True`` does here.
* **Early stopping** on validation HR@10 (checked after every epoch, ``patience`` epochs
  without a gain end training); the best epoch's weights are evaluated on the test targets.

The paper's MovieLens-1M numbers for HSTU are HR@10 0.3097 and NDCG@10 0.1720
(``max_len`` 200, ``d`` 50, two blocks, one head, dropout 0.2, 128 negatives, tau 0.05).
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dv365.data.timeline import TimelineStore
from dv365.downstream.hstu import Hstu, last_outputs
from dv365.downstream.hstu_options import HstuOptions
from dv365.errors import DataError

MIN_EVENTS = 3  # a training event, the validation target and the test target
TOP_K = 10


@dataclass(frozen=True)
class ItemSequences:
    """Each kept user's events in time order, as CSR arrays: user ``u`` owns
    ``items[offsets[u]:offsets[u + 1]]`` (item codes into ``catalogue``) and the same rows of
    ``ts`` (ms)."""

    items: np.ndarray
    ts: np.ndarray
    offsets: np.ndarray
    catalogue: np.ndarray  # the media id of each item code, ascending

    @property
    def num_users(self) -> int:
        return len(self.offsets) - 1

    @property
    def num_items(self) -> int:
        return len(self.catalogue)


def item_sequences(store: TimelineStore, *, shuffle_within_users: bool = False,
                   seed: int = 0) -> ItemSequences:
    """The users of ``store`` with at least :data:`MIN_EVENTS` events, their items in time
    order. ``shuffle_within_users`` permutes each user's items over the same timestamps (a
    control: it removes what the order says and keeps everything else)."""
    lengths = store.history_lengths()
    keep = lengths >= MIN_EVENTS
    if not keep.any():
        raise DataError(f"no user has {MIN_EVENTS} events (a training event, a validation "
                        "and a test target)", where=str(store.source))
    starts = store.offsets[:-1][keep]
    kept = lengths[keep]
    rows = np.repeat(starts - np.r_[0, np.cumsum(kept)[:-1]], kept) + np.arange(kept.sum())
    media = np.asarray(store.media_id)[rows]
    catalogue, items = np.unique(media, return_inverse=True)
    offsets = np.r_[0, np.cumsum(kept)].astype(np.int64)
    if shuffle_within_users:
        rng = np.random.default_rng(seed)
        owner = np.repeat(np.arange(len(kept)), kept)
        items = items[np.lexsort((rng.random(items.size), owner))]
    return ItemSequences(items.astype(np.int64), np.asarray(store.ts)[rows].astype(np.int64),
                         offsets, catalogue.astype(np.int64))


class NextItemModel(nn.Module):
    """Item embeddings, learned absolute positions and an :class:`Hstu` encoder (see the
    module docstring for the equations)."""

    def __init__(self, num_items: int, options: HstuOptions, *, input_dropout: float):
        super().__init__()
        self.dim = options.dim
        self.items = nn.Embedding(num_items, options.dim)
        self.positions = nn.Embedding(options.max_len, options.dim)
        nn.init.normal_(self.items.weight, std=0.02)
        nn.init.normal_(self.positions.weight, std=1.0 / math.sqrt(options.dim))
        self.input_dropout = nn.Dropout(input_dropout)
        self.encoder = Hstu(options)

    def item_table(self) -> torch.Tensor:
        """``[I, d]``: the L2-normalised item embeddings that outputs are scored against."""
        return F.normalize(self.items.weight, dim=-1, eps=1e-6)

    def forward(self, items: torch.Tensor, offsets: torch.Tensor, ts: torch.Tensor,
                query_ts: torch.Tensor) -> torch.Tensor:
        """Jagged item codes ``[T]`` -> L2-normalised outputs ``[T, d]``."""
        lengths = offsets[1:] - offsets[:-1]
        owner = torch.repeat_interleave(torch.arange(lengths.numel(), device=items.device),
                                        lengths)
        position = torch.arange(items.numel(), device=items.device) - offsets[:-1][owner]
        x = self.items(items) * math.sqrt(self.dim) + self.positions(position)
        out = self.encoder(self.input_dropout(x), offsets, ts, query_ts)
        return F.normalize(out, dim=-1, eps=1e-6)


@dataclass(frozen=True)
class SequenceBatch:
    """Jagged model inputs of some users and what their outputs should predict."""

    items: torch.Tensor
    ts: torch.Tensor
    offsets: torch.Tensor
    query_ts: torch.Tensor
    targets: torch.Tensor  # [B] for evaluation, [T] (one per input row) for training


def _windows(seq: ItemSequences, users: np.ndarray, ends: np.ndarray, max_len: int,
             device: torch.device
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray]:
    """The most recent ``max_len`` events before position ``ends[b]`` of each user, jagged:
    items, timestamps and offsets, and the rows of ``seq`` they come from."""
    starts = np.maximum(ends - max_len, 0)
    lengths = ends - starts
    base = seq.offsets[users]
    rows = np.repeat(base + starts - np.r_[0, np.cumsum(lengths)[:-1]], lengths) + \
        np.arange(lengths.sum())
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=torch.long, device=device)

    return t(seq.items[rows]), t(seq.ts[rows]), t(offsets), rows


def training_batch(seq: ItemSequences, users: np.ndarray, max_len: int,
                   device: torch.device) -> SequenceBatch:
    """The training sequences of ``users`` (each with two training events or more): the
    training part is all but the last two events; the inputs are its most recent
    ``max_len + 1`` events but the last, each row's target the event after it, and the
    request time the last training event's."""
    train_len = np.diff(seq.offsets)[users] - 2
    items, ts, offsets, rows = _windows(seq, users, train_len - 1, max_len, device)
    targets = torch.as_tensor(seq.items[rows + 1], device=device)
    query_ts = torch.as_tensor(seq.ts[seq.offsets[users] + train_len - 1], device=device)
    return SequenceBatch(items, ts, offsets, query_ts, targets)


def evaluation_batch(seq: ItemSequences, users: np.ndarray, back: int, max_len: int,
                     device: torch.device) -> SequenceBatch:
    """The evaluation sequences of ``users``: the target is the event ``back`` from the end
    (2: validation, 1: test), the inputs the ``max_len`` events before it and the request
    time the target's."""
    at = seq.offsets[users + 1] - back
    items, ts, offsets, _ = _windows(seq, users, np.diff(seq.offsets)[users] - back, max_len,
                                     device)
    return SequenceBatch(items, ts, offsets, torch.as_tensor(seq.ts[at], device=device),
                         torch.as_tensor(seq.items[at], device=device))


def sampled_softmax_loss(outputs: torch.Tensor, targets: torch.Tensor, table: torch.Tensor,
                         *, negatives: int, temperature: float,
                         generator: torch.Generator) -> torch.Tensor:
    """Mean over rows of ``-log softmax`` of the target among ``negatives`` uniform items
    (shared by the rows; one equal to a row's target does not count for that row);
    ``outputs [R, d]``, ``targets [R]``, ``table [I, d]``."""
    sampled = torch.randint(table.shape[0], (negatives,), generator=generator,
                            device="cpu").to(table.device)
    positive = (outputs * table[targets]).sum(-1, keepdim=True)
    negative = outputs @ table[sampled].T
    negative = negative.masked_fill(sampled[None, :] == targets[:, None], float("-inf"))
    logits = torch.cat([positive, negative], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros_like(targets))


@torch.no_grad()
def evaluate(model: NextItemModel, seq: ItemSequences, *, back: int, max_len: int,
             batch_size: int, device: torch.device,
             exclude_history: bool = False) -> dict[str, float]:
    """HR@1, HR@10 and NDCG@10 of the targets ``back`` events from each user's end (2:
    validation, 1: test) against the whole catalogue."""
    model.eval()
    table = model.item_table()
    ranks = []
    for start in range(0, seq.num_users, batch_size):
        users = np.arange(start, min(start + batch_size, seq.num_users))
        b = evaluation_batch(seq, users, back, max_len, device)
        user, _ = last_outputs(model(b.items, b.offsets, b.ts, b.query_ts), b.offsets)
        scores = user @ table.T
        if exclude_history:
            owner = torch.repeat_interleave(torch.arange(len(users), device=device),
                                            b.offsets[1:] - b.offsets[:-1])
            scores[owner, b.items] = float("-inf")
        target = scores.gather(1, b.targets[:, None])
        ranks.append((scores > target).sum(1) + 1)
    return ranking_metrics(torch.cat(ranks))


def ranking_metrics(ranks: torch.Tensor) -> dict[str, float]:
    """HR@1, HR@10 and NDCG@10 of 1-based target ranks."""
    rank = ranks.double()
    hit = rank <= TOP_K
    return {"hr@1": float((rank <= 1).double().mean()), "hr@10": float(hit.double().mean()),
            "ndcg@10": float(torch.where(hit, 1.0 / torch.log2(rank + 1), 0.0).mean())}


def run_movielens_check(data_dir: str | os.PathLike, *, options: HstuOptions,
                        epochs: int, seed: int = 0, batch_size: int = 128,
                        learning_rate: float = 1e-3, negatives: int = 128,
                        temperature: float = 0.05, input_dropout: float = 0.2,
                        patience: int = 5, exclude_history: bool = False,
                        shuffle_within_users: bool = False, device: str = "cpu",
                        cache_dir: str | os.PathLike | None = None,
                        log=None) -> dict:
    """Train and evaluate the next-item model on the data folder ``data_dir`` (what
    ``dv365 import movielens`` writes) by the protocol of the module docstring.

    Returns ``val_hr@1``, ``val_hr@10``, ``val_ndcg@10`` (best epoch), the same with
    ``test_``, ``chance_hr@10`` (``10 / I``), ``train_examples_per_s`` (target rows per
    second of training), ``best_epoch``, ``epochs_run``, ``users`` and ``items``. ``log``,
    when given, hears one line per epoch.
    """
    torch.manual_seed(seed)
    dev = torch.device(device)
    store = TimelineStore.open(Path(data_dir) / "events", cache_dir=cache_dir)
    seq = item_sequences(store, shuffle_within_users=shuffle_within_users, seed=seed)
    model = NextItemModel(seq.num_items, options, input_dropout=input_dropout).to(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, betas=(0.9, 0.98),
                                  weight_decay=0.0)
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    trainable = np.flatnonzero(np.diff(seq.offsets) >= MIN_EVENTS + 1)
    eval_args = dict(max_len=options.max_len, batch_size=4 * batch_size, device=dev,
                     exclude_history=exclude_history)
    best, best_state, best_epoch, examples, train_s = None, None, -1, 0, 0.0
    epoch = 0
    for epoch in range(epochs):
        model.train()
        began = time.perf_counter()
        order = trainable[rng.permutation(len(trainable))]
        for start in range(0, len(order), batch_size):
            b = training_batch(seq, order[start:start + batch_size], options.max_len, dev)
            outputs = model(b.items, b.offsets, b.ts, b.query_ts)
            loss = sampled_softmax_loss(outputs, b.targets, model.item_table(),
                                        negatives=negatives, temperature=temperature,
                                        generator=generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            examples += b.targets.numel()
        train_s += time.perf_counter() - began
        val = evaluate(model, seq, back=2, **eval_args)
        if log is not None:
            log(f"epoch {epoch}: loss {float(loss):.4f}, val HR@10 {val['hr@10']:.4f}, "
                f"NDCG@10 {val['ndcg@10']:.4f}")
        if best is None or val["hr@10"] > best["hr@10"]:
            best, best_epoch = val, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    test = evaluate(model, seq, back=1, **eval_args)
    result = {f"val_{k}": v for k, v in (best or {}).items()}
    result.update({f"test_{k}": v for k, v in test.items()})
    result.update({"chance_hr@10": min(1.0, TOP_K / seq.num_items),
                   "train_examples_per_s": examples / train_s if train_s else 0.0,
                   "best_epoch": best_epoch, "epochs_run": epoch + 1 if epochs else 0,
                   "users": seq.num_users, "items": seq.num_items})
    return result
