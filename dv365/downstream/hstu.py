"""``hstu``: the HSTU sequence encoder (Zhai et al. 2024, "Actions Speak Louder than Words",
arXiv 2402.17152), the user side of the strong control "HSTU over the user's most recent K
events".

It follows the layer of the paper and of its public reference code
(meta-recsys/generative-recommenders, ``research/modeling/sequential/hstu.py``): pointwise
SiLU attention without softmax, normalised by the fixed padded length, with a learned
relative position bias plus a learned bias per bucket of log time gap.

Callers see jagged tensors only: ``values [T, d]`` holds user ``b``'s events at rows
``offsets[b] .. offsets[b + 1] - 1`` in time order. Inside, a batch is padded to its longest
sequence (never to ``max_len``); since the divisor is ``max_len`` and padding never reaches
a real position, a user's outputs do not depend on the other users of the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dv365.downstream.hstu_options import HstuOptions

# The reference's bucket width: log base 10**0.301 ~= 2, so about one bucket per doubling.
TIME_BUCKET_LOG_WIDTH = 0.301
# The reference's LayerNorm epsilon (the norms have no learned scale or shift).
LAYER_NORM_EPS = 1e-6
MS_PER_SECOND = 1000.0


def time_bucket(dt_seconds: torch.Tensor, num_buckets: int) -> torch.Tensor:
    """``clamp(floor(ln(max(|dt|, 1)) / 0.301), 0, num_buckets)`` (int64): the bucket of a
    time gap ``dt`` in seconds, so ``num_buckets + 1`` buckets in all. Gaps up to a second
    share bucket 0; 2 s is bucket 2, 10 s bucket 7, 10^6 s bucket 45."""
    log_gap = torch.log(dt_seconds.abs().to(torch.float32).clamp(min=1.0))
    return torch.floor(log_gap / TIME_BUCKET_LOG_WIDTH).long().clamp(0, num_buckets)


def check_jagged(values: torch.Tensor, offsets: torch.Tensor, timestamps: torch.Tensor,
                 query_ts: torch.Tensor, *, dim: int, max_len: int) -> torch.Tensor:
    """The lengths ``[B]`` of a jagged batch, after checking that its parts fit together,
    that no sequence is longer than ``max_len``, that each sequence's timestamps do not
    decrease, and that no request time comes before its sequence's last event.
    ValueError otherwise."""
    if offsets.dim() != 1 or offsets.numel() < 1:
        raise ValueError(f"offsets must be [B + 1], got {list(offsets.shape)}")
    batch = offsets.numel() - 1
    total = values.shape[0]
    if values.dim() != 2 or values.shape[1] != dim:
        raise ValueError(f"values must be [T, {dim}], got {list(values.shape)}")
    if timestamps.shape != (total,):
        raise ValueError(f"timestamps must be [{total}], got {list(timestamps.shape)}")
    if query_ts.shape != (batch,):
        raise ValueError(f"query_ts must be [{batch}], got {list(query_ts.shape)}")
    offsets = offsets.long()
    lengths = offsets[1:] - offsets[:-1]
    if int(offsets[0]) != 0 or int(offsets[-1]) != total or bool((lengths < 0).any()):
        raise ValueError(f"offsets must rise from 0 to T = {total}")
    if batch and int(lengths.max()) > max_len:
        longest = int(lengths.argmax())
        raise ValueError(f"sequence {longest} has {int(lengths[longest])} events, more than "
                         f"max_len = {max_len}: keep its most recent {max_len}")
    if total:
        starts = torch.zeros(total, dtype=torch.bool, device=offsets.device)
        starts[offsets[:-1][lengths > 0]] = True
        falls = (timestamps[1:] < timestamps[:-1]) & ~starts[1:]
        if bool(falls.any()):
            raise ValueError(f"timestamps go back in time at row {int(falls.nonzero()[0]) + 1}")
        has = lengths > 0
        early = query_ts[has] < timestamps[offsets[1:][has] - 1]
        if bool(early.any()):
            b = int(has.nonzero()[early.nonzero()[0]])
            raise ValueError(f"query_ts[{b}] is before that sequence's last event")
    return lengths


class _BucketGather(torch.autograd.Function):
    """``weights[buckets]`` whose backward is a histogram (``bincount``) of the gradient over
    the few buckets: the plain gather's backward scatters ``B n^2`` values into 129 slots
    one atomic add at a time, which serializes on a GPU."""

    @staticmethod
    def forward(ctx, weights: torch.Tensor, buckets: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(buckets)
        ctx.size = weights.numel()
        return weights[buckets]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (buckets,) = ctx.saved_tensors
        summed = torch.bincount(buckets.reshape(-1), weights=grad.reshape(-1).float(),
                                minlength=ctx.size)
        return summed.to(grad.dtype), None


class HstuLayer(nn.Module):
    """One HSTU block on a padded batch. With ``x`` the ``[n, d]`` events of one user,
    ``phi`` = SiLU, ``LN`` a layer norm without learned scale or shift (eps 1e-6), ``h`` heads
    and ``N = max_len``:

    * pointwise projection: ``U, V, Q, K = split(phi(LN(x) W))``, ``W`` ``[d, h (2 d_v +
      2 d_qk)]`` (one linear to four parts, no bias);
    * attention per head: ``A = phi(Q K^T + rab) / N`` masked causally (row ``i`` sees
      ``j <= i``), no softmax and no ``1/sqrt(d_qk)``;
    * relative attention bias: ``rab[i, j] = p[N - 1 + j - i] + w[bucket(t'_i - t_j)]`` with
      ``p`` ``[2N - 1]`` per relative position, ``w`` ``[time_buckets + 1]`` per bucket of
      :func:`time_bucket` (seconds), ``t_j`` the key's time and ``t'_i`` the time of the
      event after the query ``i`` (the request time for the last event), as the reference
      forms it from timestamps extended with the target's;
    * output: ``y = O(dropout(LN(A V) * U)) + o + x`` (heads concatenated before the norm).
    """

    def __init__(self, options: HstuOptions):
        super().__init__()
        self.heads = options.heads
        self.attention_dim = options.attention_dim
        self.linear_dim = options.linear_dim
        self.max_len = options.max_len
        self.dropout = options.dropout
        width = options.heads * (2 * options.linear_dim + 2 * options.attention_dim)
        self.uvqk = nn.Parameter(torch.randn(options.dim, width) * 0.02)
        self.position_bias = nn.Parameter(torch.randn(2 * options.max_len - 1) * 0.02)
        self.time_bias = nn.Parameter(torch.randn(options.time_buckets + 1) * 0.02)
        self.output = nn.Linear(options.heads * options.linear_dim, options.dim)
        nn.init.xavier_uniform_(self.output.weight)

    def attention(self, q: torch.Tensor, k: torch.Tensor, buckets: torch.Tensor,
                  relative: torch.Tensor) -> torch.Tensor:
        """``A = phi(Q K^T + rab) / N``, zero where ``j > i``: ``[B, h, m, n]`` from padded
        queries ``q [B, m, h, d_qk]`` and keys ``k [B, n, h, d_qk]``, the queries' time
        buckets ``[B, m, n]`` and position indices ``relative`` (``[m, n]`` or ``[B, m, n]``;
        see :meth:`forward`)."""
        bias = self.position_bias[relative] + _BucketGather.apply(self.time_bias, buckets)
        scores = torch.einsum("bihd,bjhd->bhij", q, k) + bias.unsqueeze(1)
        # Padded keys hold zero K and V, and only padded queries see them (causality), so
        # masking the future is enough for the real rows; the mask carries the 1/N.
        scale = (relative <= self.max_len - 1).to(scores.dtype) / self.max_len  # [.., m, n]
        return F.silu(scores) * torch.broadcast_to(scale, buckets.shape).unsqueeze(1)

    def _project(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``U, V, Q, K = split(phi(LN(x) W))``, each ``[T, h * width]``."""
        h, dqk, dv = self.heads, self.attention_dim, self.linear_dim
        projected = F.silu(F.layer_norm(x, (x.shape[1],), eps=LAYER_NORM_EPS) @ self.uvqk)
        return projected.split([h * dv, h * dv, h * dqk, h * dqk], dim=1)

    def _output(self, attended: torch.Tensor, u: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``O(dropout(LN(A V) * U)) + o + x`` for ``attended = A V`` ``[R, h d_v]``."""
        gated = F.layer_norm(attended, (attended.shape[1],), eps=LAYER_NORM_EPS) * u
        return self.output(F.dropout(gated, p=self.dropout, training=self.training)) + x

    def forward(self, x: torch.Tensor, rows: torch.Tensor, batch: int, length: int,
                buckets: torch.Tensor, relative: torch.Tensor) -> torch.Tensor:
        """``x [T, d]`` -> ``[T, d]``; ``rows [T]`` is each event's row in the padded
        ``[batch * length]`` layout, ``buckets [batch, length, length]`` the time bucket of
        every (query ``i``, key ``j``) pair and ``relative [length, length]`` the position
        bias index ``N - 1 + j - i``."""
        u, v, q, k = self._project(x)
        q, k, v = (_pad(t, rows, batch, length).view(batch, length, self.heads, -1)
                   for t in (q, k, v))
        weights = self.attention(q, k, buckets, relative)
        attended = torch.einsum("bhij,bjhd->bihd", weights, v).reshape(batch * length, -1)
        return self._output(attended[rows], u, x)

    def last(self, x: torch.Tensor, rows: torch.Tensor, last_rows: torch.Tensor, batch: int,
             length: int, buckets: torch.Tensor, relative: torch.Tensor) -> torch.Tensor:
        """:meth:`forward`'s output at each sequence's last event only, ``[B, d]``:
        ``last_rows [B]`` are those events' rows of ``x`` (sequences must be non-empty), the
        other arguments :meth:`forward`'s. Every key is still read, but one query per
        sequence instead of ``n``."""
        u, v, q, k = self._project(x)
        k, v = (_pad(t, rows, batch, length).view(batch, length, self.heads, -1)
                for t in (k, v))
        q_last = q[last_rows].view(batch, 1, self.heads, -1)
        at = rows[last_rows] - torch.arange(batch, device=x.device) * length  # position i
        index = torch.arange(batch, device=x.device)
        weights = self.attention(q_last, k, buckets[index, at].unsqueeze(1),
                                 relative[at].unsqueeze(1))
        attended = torch.einsum("bhij,bjhd->bihd", weights, v).reshape(batch, -1)
        return self._output(attended, u[last_rows], x[last_rows])


class Hstu(nn.Module):
    """A stack of :class:`HstuLayer` over jagged event sequences.

    ``forward(values [T, d], offsets [B + 1], timestamps [T], query_ts [B]) -> [T, d]``:
    ``timestamps`` are the events' times and ``query_ts`` each user's request time (both
    int64 ms UTC; a request comes after its sequence's last event, or at the same time:
    one before it is a ValueError, as are a sequence longer than ``max_len`` and timestamps
    that go back in time). Output row ``t`` is the encoding of the user's events up to and
    including ``t`` (causal); the user representation a ranker reads is the last row,
    :func:`last_outputs`. Sequences may be empty.

    The attention is dense: each block holds ``[B, heads, n, n]`` scores, ``n`` the batch's
    longest sequence, and the time buckets of all ``[B, n, n]`` pairs are computed once for
    all blocks (each block has its own bias weights, as in the reference).

    The stack adds no input or output normalisation of its own: each block normalises its
    input (pre-norm, residual around it), as in the reference, whose input embedding
    (``e * sqrt(d)`` plus a learned absolute position) and output L2 normalisation belong to
    the model around the encoder (:mod:`dv365.experiments.sequential` has both).
    """

    def __init__(self, options: HstuOptions):
        super().__init__()
        self.options = options
        self.layers = nn.ModuleList(HstuLayer(options) for _ in range(options.layers))

    def forward(self, values: torch.Tensor, offsets: torch.Tensor, timestamps: torch.Tensor,
                query_ts: torch.Tensor) -> torch.Tensor:
        lengths, layout = self._layout(values, offsets, timestamps, query_ts)
        if layout is None:
            return values
        x = values
        for layer in self.layers:
            x = layer(x, *layout)
        return x

    def last(self, values: torch.Tensor, offsets: torch.Tensor, timestamps: torch.Tensor,
             query_ts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``last_outputs(self(...), offsets)`` (the user representation and
        ``has_events``) without computing the last block's other rows: every block but the
        last runs on all events, the last one for each sequence's last event only."""
        lengths, layout = self._layout(values, offsets, timestamps, query_ts)
        has_events = lengths > 0
        if layout is None:
            return values.new_zeros(lengths.numel(), values.shape[1]), has_events
        x = values
        for layer in self.layers[:-1]:
            x = layer(x, *layout)
        last_rows = (offsets.long()[1:] - 1).clamp(min=0)
        out = self.layers[-1].last(x, layout[0], last_rows, *layout[1:])
        return torch.where(has_events[:, None], out, torch.zeros_like(out)), has_events

    def _layout(self, values, offsets, timestamps, query_ts):
        """The lengths, and what every block needs of the batch's padded layout: each
        event's padded row, the batch size, the padded length, the time bucket of every
        (query, key) pair and the relative position index; None for a batch without
        events."""
        o = self.options
        lengths = check_jagged(values, offsets, timestamps, query_ts, dim=o.dim,
                               max_len=o.max_len)
        batch, total = lengths.numel(), values.shape[0]
        if total == 0:
            return lengths, None
        length = int(lengths.max())
        offsets = offsets.long()
        device = values.device
        owner = torch.repeat_interleave(torch.arange(batch, device=device), lengths)
        position = torch.arange(total, device=device) - offsets[owner]
        rows = owner * length + position
        timestamps = timestamps.long()
        # t'_i: the next event's time, or the request time after the last event.
        following = torch.cat([timestamps[1:], timestamps.new_zeros(1)])
        last = position == lengths[owner] - 1
        following = torch.where(last, query_ts.long()[owner], following)
        key_ts = _pad(timestamps[:, None], rows, batch, length).view(batch, length)
        query_next = _pad(following[:, None], rows, batch, length).view(batch, length)
        gap_seconds = (query_next[:, :, None] - key_ts[:, None, :]) / MS_PER_SECOND
        # int32: half the memory of the [B, n, n] buckets, and enough for 129 of them.
        buckets = time_bucket(gap_seconds, o.time_buckets).to(torch.int32)
        i = torch.arange(length, device=device)
        relative = o.max_len - 1 + i[None, :] - i[:, None]
        return lengths, (rows, batch, length, buckets, relative)


def last_outputs(outputs: torch.Tensor, offsets: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sequence's last output row ``[B, d]`` (zeros for an empty sequence) and
    ``has_events`` (bool ``[B]``): the user representation a ranker takes from
    :class:`Hstu`."""
    offsets = offsets.long()
    has_events = offsets[1:] > offsets[:-1]
    if outputs.shape[0] == 0:
        return outputs.new_zeros(offsets.numel() - 1, outputs.shape[1]), has_events
    last = outputs[(offsets[1:] - 1).clamp(min=0)]
    return torch.where(has_events[:, None], last, torch.zeros_like(last)), has_events


def _pad(values: torch.Tensor, rows: torch.Tensor, batch: int, length: int) -> torch.Tensor:
    """Jagged ``[T, w]`` -> ``[batch * length, w]`` with zeros where no event is."""
    out = values.new_zeros(batch * length, values.shape[1])
    return out.index_copy(0, rows, values)

