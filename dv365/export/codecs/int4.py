"""The ``int4`` codec: fbgemm's row-wise 4-bit format with an fp16 scale and bias ("SBHalf").

Each of a user's ``rows`` vectors of width ``dim`` is stored as one fused row of
``dim / 2 + 4`` bytes (132 for ``dim = 256``)::

    codes     dim / 2 bytes: code of column 2k in the low nibble, column 2k+1 in the high one
    scale     fp16 little-endian
    bias      fp16 little-endian (the row's minimum, rounded to fp16)

and a value decodes as ``scale * code + bias`` (in float32). The payload is the user's rows
concatenated. This is the byte layout of fbgemm's
``torch.ops.fbgemm.FloatToFusedNBitRowwiseQuantizedSBHalf``; torchrec's quantized modules
want the same bytes in another order, see :func:`to_torchrec_rows` /
:func:`from_torchrec_rows`.

On the CPU the codec calls fbgemm's operators. fbgemm-gpu-cpu has no CUDA kernel for them,
so on any other device it runs :func:`quantize_rows` / :func:`dequantize_rows`, plain torch
code that reproduces fbgemm's arithmetic step by step and gives the same bytes (the tests
compare them byte for byte); it also stands in on the CPU where fbgemm_gpu is not installed.

The traps this codec closes (docs/codecs.md has the details):

* fbgemm encodes NaN as a finite row and |x| > 65504 as an fp16 inf bias or scale, silently:
  :meth:`Int4Codec.encode` runs :meth:`~dv365.export.codecs.base.Codec.check` first;
* the operator takes 2-D input with ``dim`` a multiple of 4 only: :meth:`Int4Codec.supports`;
* which of ``-0.0`` and ``+0.0`` becomes the bias of a row whose minimum is zero depends on
  their positions and on fbgemm's SIMD path, so both paths turn ``-0.0`` into ``+0.0`` first
  (the same value; only the bias's sign bit would differ).
"""

from __future__ import annotations

import functools
import importlib

import torch

from dv365.export.codecs.base import Codec

BITS = 4
LEVELS = (1 << BITS) - 1
SCALE_BIAS_BYTES = 4
"""fp16 scale then fp16 bias after each row's codes."""

TORCHREC_ROW_ALIGNMENT = 16
"""torchrec's quantized modules pad every row to a multiple of this many bytes."""


def row_size(dim: int) -> int:
    """Bytes of one fused row of ``dim`` values: ``dim / 2`` of codes, 4 of scale and bias."""
    return dim // 2 + SCALE_BIAS_BYTES


@functools.cache
def _fbgemm_available() -> bool:
    try:
        importlib.import_module("fbgemm_gpu")  # registers torch.ops.fbgemm
    except ImportError:
        return False
    return True


def _uses_fbgemm(tensor: torch.Tensor) -> bool:
    return tensor.device.type == "cpu" and _fbgemm_available()


def _fp16_exact(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``values`` rounded to fp16 (round half to even, subnormals kept) and back to float32."""
    half = values.to(torch.float16)
    return half, half.to(torch.float32)


def quantize_rows(rows: torch.Tensor) -> torch.Tensor:
    """fbgemm's 4-bit row-wise quantization in plain torch: ``float32 [N, D]`` -> ``uint8
    [N, D/2 + 4]``, the same bytes as ``FloatToFusedNBitRowwiseQuantizedSBHalf(rows, 4)`` on
    any device.

    The steps are fbgemm's: the bias is the row minimum rounded to fp16 and the rest works
    from that rounded minimum; the scale is ``(max - bias) / 15`` in float32, rounded to fp16
    (1 where the row is constant or the fp16 scale is 0; it is negative where rounding moved
    the bias above a constant row's value); a code is ``round_half_even((x - bias) * (1 /
    scale))`` clamped to [0, 15], a multiplication by the float32 reciprocal as fbgemm does,
    not a division. Every division here is tensor by tensor because torch may turn a
    division by a Python number into a multiplication by its reciprocal, which rounds
    differently. ``-0.0`` becomes ``+0.0`` first (see the module docstring). No NaN, inf or
    value past +-65504 (the caller checks).
    """
    if rows.dim() != 2 or rows.shape[1] % 4:
        raise ValueError(f"expected [N, D] rows with D a multiple of 4, got {list(rows.shape)}")
    values = rows.to(torch.float32) + 0.0  # -0.0 + 0.0 is +0.0
    bias_half, bias = _fp16_exact(values.amin(dim=1, keepdim=True))
    span = values.amax(dim=1, keepdim=True) - bias
    one = torch.ones_like(span)
    scale = torch.where(span == 0, one, span / torch.full_like(span, float(LEVELS)))
    scale = _fp16_exact(scale)[1]
    # fbgemm also resets a scale whose reciprocal is inf; the smallest fp16 scale, 2^-24,
    # has a finite one, so that case never arises
    scale = torch.where(scale == 0, one, scale)
    inverse = one / scale
    codes = torch.round((values - bias) * inverse).clamp_(0, LEVELS).to(torch.uint8)
    packed = codes[:, 0::2] | (codes[:, 1::2] << 4)
    scale_half = scale.to(torch.float16)
    return torch.cat([packed, scale_half.view(torch.uint8), bias_half.view(torch.uint8)], dim=1)


def dequantize_rows(fused: torch.Tensor, dim: int) -> torch.Tensor:
    """The inverse of :func:`quantize_rows` in plain torch: ``uint8 [N, D/2 + 4]`` -> ``float32
    [N, D]``, ``scale * code + bias``, equal to ``FusedNBitRowwiseQuantizedSBHalfToFloat``
    (the product of a 4-bit code and an fp16 scale is exact in float32, so only the addition
    rounds, with or without a fused multiply-add)."""
    if fused.dim() != 2 or fused.shape[1] != row_size(dim):
        raise ValueError(f"expected [N, {row_size(dim)}] fused rows of width {dim}, "
                         f"got {list(fused.shape)}")
    packed = fused[:, : dim // 2]
    scale = fused[:, dim // 2: dim // 2 + 2].contiguous().view(torch.float16).to(torch.float32)
    bias = fused[:, dim // 2 + 2:].contiguous().view(torch.float16).to(torch.float32)
    codes = torch.stack([packed & LEVELS, packed >> BITS], dim=2).reshape(len(fused), dim)
    return codes.to(torch.float32) * scale + bias


def to_torchrec_rows(fused: torch.Tensor, dim: int,
                     row_alignment: int = TORCHREC_ROW_ALIGNMENT) -> torch.Tensor:
    """Our fused rows ``uint8 [N, D/2 + 4]`` in the layout of torchrec's quantized
    ``EmbeddingBagCollection`` (an ``IntNBitTableBatchedEmbeddingBagsCodegen`` table with
    ``DataType.INT4``): ``uint8 [N, W]`` with scale and bias *first*, then the codes, then
    zero bytes up to ``W``, the row size rounded up to ``row_alignment`` (torchrec's default
    16; 48 bytes for ``D = 64``, 144 for ``D = 256``).

    Copy the result into the table's weights (table ``t`` of a TBE module is
    ``tbe.split_embedding_weights_with_scale_bias(0)[t][0]``) to serve stored rows through
    torchrec: its pooled lookups then equal the sums of :func:`dequantize_rows`.
    """
    size = row_size(dim)
    if fused.dim() != 2 or fused.shape[1] != size:
        raise ValueError(f"expected [N, {size}] fused rows of width {dim}, got {list(fused.shape)}")
    width = -(-size // row_alignment) * row_alignment
    out = torch.zeros((len(fused), width), dtype=torch.uint8, device=fused.device)
    out[:, :SCALE_BIAS_BYTES] = fused[:, dim // 2:]
    out[:, SCALE_BIAS_BYTES:size] = fused[:, : dim // 2]
    return out


def from_torchrec_rows(weights: torch.Tensor, dim: int) -> torch.Tensor:
    """The inverse of :func:`to_torchrec_rows`: torchrec's INT4 rows ``uint8 [N, W]`` (scale,
    bias, codes, padding; ``W >= D/2 + 4``) -> our fused rows ``uint8 [N, D/2 + 4]``. Reads
    the rows of a torchrec-quantized table (``QuantEmbeddingBagCollection.from_float``) as
    stored records."""
    size = row_size(dim)
    if weights.dim() != 2 or weights.shape[1] < size:
        raise ValueError(f"expected [N, >= {size}] torchrec rows of width {dim}, "
                         f"got {list(weights.shape)}")
    return torch.cat([weights[:, SCALE_BIAS_BYTES:size], weights[:, :SCALE_BIAS_BYTES]], dim=1)


class Int4Codec(Codec):
    """fbgemm's row-wise 4-bit format, ``dim / 2 + 4`` bytes a row (fp16 scale and bias).

    Encodes through fbgemm on the CPU and through :func:`quantize_rows` elsewhere: the same
    bytes either way, so a snapshot does not depend on where it was exported."""

    name = "int4"
    limit = 65504.0  # the bias and scale are fp16

    def supports(self, rows: int, dim: int) -> str | None:
        problem = super().supports(rows, dim)
        if problem is None and dim % 4:
            problem = f"dim must be a multiple of 4 (fbgemm's 4-bit rows), got {dim}"
        return problem

    def payload_size(self, rows: int, dim: int) -> int:
        return rows * row_size(dim)

    def encode(self, vectors: torch.Tensor) -> torch.Tensor:
        self.check(vectors)
        users, rows, dim = vectors.shape
        self.require(rows, dim)
        flat = vectors.reshape(users * rows, dim).to(torch.float32)
        if _uses_fbgemm(flat):
            fused = torch.ops.fbgemm.FloatToFusedNBitRowwiseQuantizedSBHalf(
                (flat + 0.0).contiguous(), BITS)
        else:
            fused = quantize_rows(flat)
        return fused.reshape(users, rows * row_size(dim))

    def decode(self, payloads: torch.Tensor, rows: int, dim: int) -> torch.Tensor:
        users = payloads.shape[0]
        if payloads.dim() != 2 or payloads.shape[1] != self.payload_size(rows, dim):
            raise ValueError(f"expected [B, {self.payload_size(rows, dim)}] int4 payloads of "
                             f"[{rows}, {dim}] vectors, got {list(payloads.shape)}")
        fused = payloads.reshape(users * rows, row_size(dim))
        if _uses_fbgemm(fused):
            values = torch.ops.fbgemm.FusedNBitRowwiseQuantizedSBHalfToFloat(
                fused.contiguous(), BITS)
        else:
            values = dequantize_rows(fused, dim)
        return values.reshape(users, rows, dim)
