"""The codec contract: a user's ``[rows, dim]`` float vectors <-> a fixed-size payload.

A codec is stateless and works on batches of users as torch tensors on any device, so the
export can encode where the encoder ran (the GPU) and a store can decode a batch of reads in
one call. Every codec refuses what it cannot represent (NaN, inf, values past its range)
with a :class:`EncodeError` instead of writing a record that silently decodes to something
else.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch

from dv365.errors import DataError, UsageError


class EncodeError(DataError):
    """Vectors a codec cannot represent (non-finite, out of range)."""


class Codec(ABC):
    """Encodes ``[B, rows, dim]`` float vectors to ``uint8 [B, payload_size(rows, dim)]``."""

    name: ClassVar[str]
    """The registered name, recorded in every snapshot's manifest."""

    limit: ClassVar[float] = float("inf")
    """The largest magnitude the codec represents; :meth:`check` refuses larger values."""

    def supports(self, rows: int, dim: int) -> str | None:
        """Why ``[rows, dim]`` vectors cannot be encoded (``None`` when they can)."""
        return None if rows > 0 and dim > 0 else "rows and dim must be positive"

    def require(self, rows: int, dim: int, *, where: str | None = None) -> None:
        """A :class:`UsageError` when :meth:`supports` says no."""
        problem = self.supports(rows, dim)
        if problem:
            raise UsageError(f"codec {self.name} cannot encode [{rows}, {dim}] vectors: "
                             f"{problem}", where=where, hint="choose another --codec")

    @abstractmethod
    def payload_size(self, rows: int, dim: int) -> int:
        """Bytes of one user's payload."""

    @abstractmethod
    def encode(self, vectors: torch.Tensor) -> torch.Tensor:
        """``float32 [B, rows, dim]`` -> ``uint8 [B, payload_size]`` on the same device."""

    @abstractmethod
    def decode(self, payloads: torch.Tensor, rows: int, dim: int) -> torch.Tensor:
        """``uint8 [B, payload_size]`` -> ``float32 [B, rows, dim]`` on the same device."""

    def check(self, vectors: torch.Tensor, *, first_user: int | None = None) -> None:
        """Refuse non-finite values and values past :attr:`limit` with one line naming the
        first offending user (its position in the batch, or its id with ``first_user``)."""
        if vectors.dim() != 3:
            raise ValueError(f"expected [B, rows, dim] vectors, got shape {list(vectors.shape)}")
        if vectors.numel() == 0:
            return
        # One reduction answers the common case; the search for the culprit runs only on a
        # failure (NaN propagates through aminmax, inf shows as an extreme).
        low, high = torch.aminmax(vectors)
        if bool(torch.isfinite(low) & torch.isfinite(high)) and max(
                -float(low), float(high)) <= self.limit:
            return
        flat = vectors.reshape(vectors.shape[0], -1)
        bad = ~torch.isfinite(flat)
        what, hint = "a non-finite value", "has training diverged? look at the run's metrics"
        if not bool(bad.any()) and self.limit != float("inf"):
            bad = flat.abs() > self.limit
            what = f"a value past +-{self.limit:g}, the codec's range"
            hint = "export with --codec fp32"
        if bool(bad.any()):
            row = int(bad.any(dim=1).nonzero()[0, 0])
            col = int(bad[row].nonzero()[0, 0])
            value = float(flat[row, col])
            who = f"user {first_user}" if first_user is not None else f"batch row {row}"
            raise EncodeError(f"{who}'s embedding has {what} ({value!r} at flat index {col}); "
                              f"codec {self.name} would store it wrongly", hint=hint)
