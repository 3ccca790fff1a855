"""The jagged output: per slice, the selected rows and their bag weights, key-major.

:class:`JaggedSlices` carries a batch in torchrec's key-major layout (keys = slice names in
IR order, ``lengths[s * B + b]``), with weights already normalized per bag so that a SUM
``EmbeddingBagCollection`` gives each slice's mean or weighted mean. :func:`validate` checks
the layout at the boundary, because torchrec does not validate KeyedJaggedTensors. Every
launcher produces this type; :func:`dv365.kernels.jagged.slice_jagged` is the entry point.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dv365.errors import DataError
from dv365.slices.ir import SpecIR


@dataclass(frozen=True)
class JaggedSlices:
    """A batch's slices, key-major. ``counts[b, s]`` is user ``b``'s count for slice ``s``.

    ``kjt`` builds the torchrec ``KeyedJaggedTensor`` (torchrec is imported only then, so the
    kernels run where torchrec is not installed).
    """

    keys: tuple[str, ...]
    lengths: torch.Tensor  # int64 [S * B]
    values: torch.Tensor  # int64 rows
    weights: torch.Tensor  # float32 bag weights
    counts: torch.Tensor  # int64 [B, S]

    @property
    def kjt(self):
        from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

        return KeyedJaggedTensor(keys=list(self.keys), values=self.values,
                                 weights=self.weights, lengths=self.lengths)

    def bag(self, b: int, s: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows and weights of user ``b``'s slice ``s`` (for tests and debugging)."""
        B = self.counts.shape[0]
        starts = torch.cumsum(self.lengths, 0) - self.lengths
        j = s * B + b
        lo = int(starts[j])
        hi = lo + int(self.lengths[j])
        return self.values[lo:hi], self.weights[lo:hi]


def row_limits(ir: SpecIR) -> list[int]:
    """Per slice, the number of rows of its table (what :func:`validate` checks rows against)."""
    return [ir.table(s.table).num_rows for s in ir.slices]


def validate(jagged: JaggedSlices, row_limits: list[int]) -> JaggedSlices:
    """Check the key-major layout and that every row fits its slice's table.

    The checks on device tensors are batched into two reads back (each a synchronization),
    the rows checked per key by a segmented max."""
    S = len(jagged.keys)
    if jagged.counts.ndim != 2 or jagged.counts.shape[1] != S:
        raise DataError(f"counts have shape {tuple(jagged.counts.shape)}, expected [B, {S}]",
                        where="jagged.counts")
    B = jagged.counts.shape[0]
    lengths, values, weights = jagged.lengths, jagged.values, jagged.weights
    if lengths.shape != (S * B,) or lengths.dtype != torch.int64:
        raise DataError(f"lengths must be int64 [{S * B}], got {lengths.dtype} "
                        f"{tuple(lengths.shape)}", where="jagged.lengths")
    if values.ndim != 1 or weights.shape != values.shape:
        raise DataError(f"values/weights have {tuple(values.shape)} / "
                        f"{tuple(weights.shape)} entries", where="jagged.values")
    n = values.shape[0]
    negative, total, disagree = torch.stack([
        (lengths < 0).any().long(), lengths.sum(),
        (lengths.view(S, B).T != jagged.counts).any().long()]).tolist()
    if negative:
        raise DataError("negative bag length", where="jagged.lengths")
    if total != n:
        raise DataError(f"values/weights have {n} entries, lengths sum to {total}",
                        where="jagged.values")
    if disagree:
        raise DataError("lengths disagree with counts", where="jagged.lengths")
    if n:
        # Per key the largest row against the key's table: a segmented max (exact in
        # float64) instead of a per-value limits array (repeat_interleave on CUDA writes it
        # with one warp per key, a large share of a batch's time).
        per_key = lengths.view(S, B).sum(1)
        key_max = torch.segment_reduce(values.double(), "max", lengths=per_key, unsafe=True)
        limits = torch.tensor(row_limits, dtype=torch.float64).to(values.device)
        too_big, negative, finite = torch.stack([
            (key_max >= limits).any(), values.min() < 0,
            torch.isfinite(weights).all()]).tolist()
        if too_big or negative:
            per_value = torch.repeat_interleave(limits.to(torch.int64), per_key, output_size=n)
            j = int(torch.nonzero((values < 0) | (values >= per_value))[0])
            raise DataError(f"row {int(values[j])} out of its table", where=f"values[{j}]")
        if not finite:
            raise DataError("a bag weight is not finite", where="jagged.weights")
    return jagged
