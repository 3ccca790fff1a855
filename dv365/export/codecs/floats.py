"""The uncompressed codecs: ``fp32`` (exact) and ``fp16`` (half the bytes, +-65504)."""

from __future__ import annotations

import torch

from dv365.export.codecs.base import Codec


class _FloatCodec(Codec):
    dtype: torch.dtype

    def payload_size(self, rows: int, dim: int) -> int:
        return rows * dim * torch.finfo(self.dtype).bits // 8

    def encode(self, vectors: torch.Tensor) -> torch.Tensor:
        self.check(vectors)
        batch, rows, dim = vectors.shape
        flat = vectors.to(self.dtype).contiguous().reshape(batch, rows * dim)
        return flat.view(torch.uint8)

    def decode(self, payloads: torch.Tensor, rows: int, dim: int) -> torch.Tensor:
        values = payloads.contiguous().view(self.dtype).to(torch.float32)
        return values.reshape(payloads.shape[0], rows, dim)


class Fp32Codec(_FloatCodec):
    """fp32 little-endian, 4 bytes a value: exact."""

    name = "fp32"
    dtype = torch.float32


class Fp16Codec(_FloatCodec):
    """fp16 little-endian, 2 bytes a value (round half to even)."""

    name = "fp16"
    dtype = torch.float16
    limit = 65504.0
