"""The uncompressed codecs: fp32 (exact) and fp16 (round half to even, +-65504), their
little-endian bytes pinned."""

from __future__ import annotations

import pytest
import torch

from dv365.export.codecs import codec_named
from dv365.export.codecs.base import EncodeError
from dv365.export.codecs.floats import Fp16Codec, Fp32Codec
from tests.export.golden import assert_golden

GOLDEN_VECTORS = torch.tensor([
    [[0.0, -0.0, 1.0, -2.5], [65504.0, -65504.0, 1e-3, 3.0e-8]],
    [[1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11, 0.1, -0.3], [6.0e-8, 1e-40, 2.0 ** -14, 1024.5]],
], dtype=torch.float32)


@pytest.mark.parametrize("codec,name", [(Fp32Codec(), "fp32_payloads.hex"),
                                        (Fp16Codec(), "fp16_payloads.hex")])
def test_payload_bytes_are_pinned(codec, name):
    assert_golden(name, codec.encode(GOLDEN_VECTORS).numpy(),
                  about=f"{codec.name} payloads of test_codecs_floats.GOLDEN_VECTORS ([2, 2, 4]), "
                        "a user a line")


def test_payload_sizes():
    assert Fp32Codec().payload_size(58, 64) == 58 * 64 * 4
    assert Fp16Codec().payload_size(58, 64) == 58 * 64 * 2


def test_fp32_round_trips_exactly():
    vectors = torch.randn(3, 5, 8, generator=torch.Generator().manual_seed(0))
    vectors[0, 0, :3] = torch.tensor([-0.0, 1e-40, 3.4e38])
    codec = codec_named("fp32")
    decoded = codec.decode(codec.encode(vectors), 5, 8)
    assert torch.equal(decoded.view(torch.int32), vectors.view(torch.int32))


def test_fp16_rounds_half_to_even_and_keeps_subnormals():
    vectors = torch.tensor([[[1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11, 2.0 ** -24, 2.0 ** -25 * 3]]])
    codec = codec_named("fp16")
    decoded = codec.decode(codec.encode(vectors), 1, 4)
    # ties go to the even neighbour; 2^-24 is the smallest subnormal, 1.5 * 2^-24 rounds to 2^-23
    assert decoded.tolist() == [[[1.0, 1.0 + 2.0 ** -9, 2.0 ** -24, 2.0 ** -23]]]


@pytest.mark.parametrize("bad", [65504.01, 65520.0, -1e5])
def test_fp16_refuses_values_past_its_range(bad):
    vectors = torch.zeros(2, 1, 4)
    vectors[1, 0, 2] = bad
    with pytest.raises(EncodeError, match="batch row 1.*past \\+-65504"):
        Fp16Codec().encode(vectors)


@pytest.mark.parametrize("codec", [Fp32Codec(), Fp16Codec()], ids=lambda c: c.name)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_both_refuse_non_finite_values(codec, bad):
    vectors = torch.zeros(1, 2, 4)
    vectors[0, 1, 0] = bad
    with pytest.raises(EncodeError, match="non-finite"):
        codec.encode(vectors)


def test_fp32_takes_values_fp16_cannot():
    vectors = torch.tensor([[[1e6, -3e38, 0.0, 1.0]]])
    assert torch.equal(Fp32Codec().decode(Fp32Codec().encode(vectors), 1, 4), vectors)
