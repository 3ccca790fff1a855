"""The int4 codec: fbgemm's row-wise 4-bit rows, the torch twin that gives the same bytes on
any device, the checks in front of the operator, and torchrec's row layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dv365.errors import UsageError
from dv365.export.codecs import codec_named, int4
from dv365.export.codecs.base import EncodeError
from dv365.export.codecs.int4 import (Int4Codec, dequantize_rows, from_torchrec_rows,
                                      quantize_rows, row_size, to_torchrec_rows)
from tests.export.golden import assert_golden

# the CPU reference; the GPU tests at the end run without it (the H200 image has no fbgemm)
HAVE_FBGEMM = int4._fbgemm_available()
needs_fbgemm = pytest.mark.skipif(not HAVE_FBGEMM, reason="needs fbgemm_gpu")

LIMIT = 65504.0
DIMS = (4, 12, 20, 256)  # 12 and 20: multiples of 4, not of 8 (the SIMD loops' tails)
PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def fbgemm_encode(rows: torch.Tensor) -> torch.Tensor:
    return torch.ops.fbgemm.FloatToFusedNBitRowwiseQuantizedSBHalf(rows.contiguous(), 4)


def fbgemm_decode(fused: torch.Tensor) -> torch.Tensor:
    return torch.ops.fbgemm.FusedNBitRowwiseQuantizedSBHalfToFloat(fused.contiguous(), 4)


def scale_bias(fused: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pair = fused[:, -4:].contiguous().view(torch.float16).to(torch.float32)
    return pair[:, 0], pair[:, 1]


def assert_same_floats(a: torch.Tensor, b: torch.Tensor) -> None:
    assert torch.equal(a.view(torch.int32), b.view(torch.int32)), (a - b).abs().max()


# -- rows: random and adversarial ------------------------------------------------------------

FINITE = st.floats(-LIMIT, LIMIT, width=32, allow_nan=False, allow_infinity=False)
EXTREMES = st.sampled_from([0.0, -0.0, LIMIT, -LIMIT, 65503.99, 1e-45, -1e-45, 1e-40, -3e-39,
                            6e-8, 3e-8, 2.98e-8, 1e-3, 0.1, 0.3, -0.3, 1.0, 15.0])


def _scaled(exponent_and_values):
    exponent, values = exponent_and_values
    return [float(np.float32(v * 2.0 ** exponent)) for v in values]


def _nudged(value_and_steps):
    # a near-constant row: a value and its float32 neighbour towards zero
    value, steps = value_and_steps
    return [float(np.nextafter(np.float32(value), np.float32(0))) if s else value
            for s in steps]


def row_of(dim: int) -> st.SearchStrategy[list[float]]:
    unit = st.floats(-1, 1, width=32)
    return st.one_of(
        st.lists(FINITE, min_size=dim, max_size=dim),                        # any finite value
        st.tuples(st.integers(-150, 15), st.lists(unit, min_size=dim, max_size=dim)).map(
            _scaled),                                                       # tiny .. huge
        FINITE.map(lambda v: [v] * dim),                                    # constant
        st.just([0.0] * dim),                                               # all zero
        st.tuples(FINITE, st.lists(st.booleans(), min_size=dim, max_size=dim)).map(_nudged),
        st.lists(st.one_of(EXTREMES, FINITE), min_size=dim, max_size=dim),  # edges, -0.0
    )


ROW_BLOCKS = st.sampled_from(DIMS).flatmap(
    lambda dim: st.lists(row_of(dim), min_size=1, max_size=6)).map(
    lambda rows: torch.tensor(rows, dtype=torch.float32))


def many_rows(count: int, dim: int, seed: int = 0) -> torch.Tensor:
    """Normal rows at scales from 1e-9 to 1e4, with constant and near-constant ones mixed in."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.randn(count, dim, generator=g)
    rows *= torch.logspace(-9, 4, count).reshape(-1, 1)
    rows[::7] = rows[::7, :1]                                 # constant
    rows[3::11] = 0.3 + rows[3::11] * 1e-7                    # near constant around 0.3
    return rows[torch.randperm(count, generator=g)].clamp(-LIMIT, LIMIT)


# -- the torch twin is fbgemm, byte for byte --------------------------------------------------

@needs_fbgemm
@PROPERTY
@given(ROW_BLOCKS)
def test_the_twin_encodes_like_fbgemm(rows):
    # the twin turns -0.0 into +0.0 first (fbgemm's choice there depends on positions, see
    # below), so it is compared with fbgemm on the same canonical rows
    assert torch.equal(quantize_rows(rows), fbgemm_encode(rows + 0.0))


@needs_fbgemm
@PROPERTY
@given(ROW_BLOCKS)
def test_the_twin_decodes_like_fbgemm(rows):
    fused = fbgemm_encode(rows + 0.0)
    assert_same_floats(dequantize_rows(fused, rows.shape[1]), fbgemm_decode(fused))


@needs_fbgemm
@PROPERTY
@given(st.sampled_from(DIMS).flatmap(lambda dim: st.tuples(
    st.just(dim),
    st.lists(st.binary(min_size=dim // 2, max_size=dim // 2), min_size=1, max_size=4),
    st.lists(st.tuples(FINITE, FINITE), min_size=4, max_size=4))))
def test_the_twin_decodes_any_codes_and_finite_scale_like_fbgemm(case):
    dim, codes, pairs = case
    n = len(codes)
    head = torch.tensor(list(b"".join(codes)), dtype=torch.uint8).reshape(n, dim // 2)
    tail = torch.tensor(pairs[:n], dtype=torch.float32).to(torch.float16).view(torch.uint8)
    fused = torch.cat([head, tail.reshape(n, 4)], dim=1)
    assert_same_floats(dequantize_rows(fused, dim), fbgemm_decode(fused))


@needs_fbgemm
@pytest.mark.parametrize("dim", [4, 12, 20, 64, 256])
def test_many_rows_encode_and_decode_like_fbgemm(dim):
    rows = many_rows(4000, dim, seed=dim)
    fused = fbgemm_encode(rows)
    assert torch.equal(quantize_rows(rows), fused)
    assert_same_floats(dequantize_rows(fused, dim), fbgemm_decode(fused))


@needs_fbgemm
def test_a_constant_row_can_get_a_negative_subnormal_scale():
    # fp16(0.3) = 0.30004883 > 0.3: the range is max - bias < 0, the scale -3.28e-6 (an fp16
    # subnormal) and every code 15, which decodes back to 0.3 within 1e-6
    rows = torch.tensor([[0.3] * 8, [0.1] * 8, [0.0] * 8, [7.0] * 8])
    fused = quantize_rows(rows)
    assert torch.equal(fused, fbgemm_encode(rows))
    scale, bias = scale_bias(fused)
    assert scale[0] < 0 and abs(scale[0]) < 6.1e-5 and bias[0] > 0.3        # 0.3: negative
    assert 0 < scale[1] < 6.1e-5 and bias[1] < 0.1                          # 0.1: positive
    assert scale[2:].tolist() == [1.0, 1.0] and bias[2:].tolist() == [0.0, 7.0]  # exact: 1
    assert fused[0, :4].tolist() == [0xFF] * 4 and fused[2:, :4].eq(0).all()
    assert (dequantize_rows(fused, 8) - rows).abs().max() < 1e-6


@needs_fbgemm
def test_a_range_too_small_for_an_fp16_scale_gets_scale_one():
    rows = torch.tensor([[0.0, 1e-7, 2e-7, 3e-7], [0.0, 0.0, 0.0, 2.0 ** -24 * 15.0]])
    scale, _ = scale_bias(quantize_rows(rows))
    assert torch.equal(quantize_rows(rows), fbgemm_encode(rows))
    assert scale.tolist() == [1.0, 2.0 ** -24]   # (3e-7)/15 rounds to fp16 0; 2^-24 is kept


@needs_fbgemm
def test_codes_round_half_to_even_and_pack_the_low_nibble_first():
    # range 15 -> scale 1, bias 0: (x - 0) * 1 rounds half to even
    rows = torch.tensor([[0.5, 1.5, 2.5, 3.5, 4.5, 15.0, 14.5, 0.0]])
    fused = quantize_rows(rows)
    assert torch.equal(fused, fbgemm_encode(rows))
    assert fused[0, :4].tolist() == [0 | 2 << 4, 2 | 4 << 4, 4 | 15 << 4, 14 | 0 << 4]


@needs_fbgemm
def test_codes_multiply_by_the_float32_reciprocal_of_the_scale_rather_than_divide():
    # bias 0, scale exactly s = max / 15; (x - 0) * fp32(1 / s) and x / s round to different
    # codes here (2 vs 3, 11 vs 10): fbgemm multiplies
    rows = torch.tensor([[0.0, 15 * 0.1751708984375, 0.4379272758960724, 0.0],
                         [0.0, 15 * 3.583984375, 37.6318359375, 0.0]])
    fused = quantize_rows(rows)
    assert torch.equal(fused, fbgemm_encode(rows))
    assert [fused[0, 1] & 15, fused[1, 1] & 15] == [2, 11]


@needs_fbgemm
def test_fbgemm_picks_the_sign_of_a_zero_minimum_by_position_so_the_codec_drops_negative_zero():
    # the same values in two orders: fbgemm's bias is +0.0 for one and -0.0 for the other
    # (which one depends on its SIMD path); the codec gives both the +0.0 bias on either path
    first = [-0.0] + [1.0] * 7 + [0.0] + [1.0] * 7
    second = [0.0] + [1.0] * 7 + [-0.0] + [1.0] * 7
    raw = fbgemm_encode(torch.tensor([first, second]))
    assert raw[0, -2:].tolist() != raw[1, -2:].tolist()
    vectors = torch.tensor([[first], [second]])
    on_fbgemm = Int4Codec().encode(vectors)
    assert on_fbgemm[:, -2:].tolist() == [[0, 0], [0, 0]]
    assert torch.equal(quantize_rows(vectors.reshape(2, 16)), on_fbgemm)


# -- the codec -------------------------------------------------------------------------------

def test_payload_is_dim_over_2_plus_4_bytes_a_row():
    codec = Int4Codec()
    assert row_size(256) == 132 and codec.payload_size(1, 256) == 132
    assert codec.payload_size(58, 256) == 58 * 132 and codec.payload_size(58, 64) == 58 * 36
    assert codec_named("int4").name == "int4"


@pytest.mark.parametrize("dim", [4, 12, 20, 256])
def test_supports_dims_that_are_multiples_of_4(dim):
    assert Int4Codec().supports(3, dim) is None


@pytest.mark.parametrize("rows,dim", [(1, 2), (1, 6), (2, 10), (1, 257), (0, 8), (1, 0)])
def test_refuses_other_shapes_with_a_usage_error(rows, dim):
    codec = Int4Codec()
    assert codec.supports(rows, dim)
    with pytest.raises(UsageError, match="codec int4 cannot encode"):
        codec.require(rows, dim)
    if rows and dim:
        with pytest.raises(UsageError, match="multiple of 4"):
            codec.encode(torch.zeros(1, rows, dim))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), 65504.01,
                                 -65520.0, 1e6])
def test_refuses_what_fbgemm_would_store_wrongly(bad):
    vectors = torch.zeros(3, 2, 8)
    vectors[1, 1, 5] = bad
    with pytest.raises(EncodeError, match="batch row 1"):
        Int4Codec().encode(vectors)


def test_the_fp16_limit_itself_encodes():
    vectors = torch.tensor([[[LIMIT, -LIMIT, 0.0, 1.0]]])
    decoded = Int4Codec().decode(Int4Codec().encode(vectors), 1, 4)
    assert torch.isfinite(decoded).all() and decoded[0, 0, 1] == -LIMIT


def test_encode_chooses_fbgemm_on_the_cpu_and_the_twin_elsewhere(monkeypatch):
    vectors = many_rows(58 * 5, 64).reshape(5, 58, 64)
    codec = Int4Codec()
    on_fbgemm = codec.encode(vectors)
    decoded = codec.decode(on_fbgemm, 58, 64)
    calls = []
    monkeypatch.setattr(int4, "_uses_fbgemm", lambda t: calls.append(t.device) or False)
    assert torch.equal(codec.encode(vectors), on_fbgemm)
    assert_same_floats(codec.decode(on_fbgemm, 58, 64), decoded)
    assert len(calls) == 2
    assert on_fbgemm.shape == (5, 58 * 36) and on_fbgemm.dtype == torch.uint8


@needs_fbgemm
def test_without_fbgemm_the_cpu_uses_the_twin(monkeypatch):
    monkeypatch.setattr(int4, "_fbgemm_available", lambda: False)
    assert not int4._uses_fbgemm(torch.zeros(1))
    monkeypatch.undo()
    assert int4._uses_fbgemm(torch.zeros(1))


@PROPERTY
@given(ROW_BLOCKS)
def test_every_value_decodes_to_the_nearest_of_its_rows_16_levels(rows):
    dim = rows.shape[1]
    decoded = Int4Codec().decode(Int4Codec().encode(rows.reshape(1, -1, dim)), len(rows), dim)[0]
    scale, bias = (t.double().reshape(-1, 1) for t in scale_bias(quantize_rows(rows)))
    levels = bias.unsqueeze(2) + scale.unsqueeze(2) * torch.arange(16, dtype=torch.float64)
    x = rows.double().unsqueeze(2)
    nearest = (x - levels).abs().min(dim=2).values
    error = (rows.double() - decoded.double()).abs()
    slack = 1e-5 * (rows.double().abs() + bias.abs() + 16 * scale.abs()) + 1e-40
    assert (error <= nearest + slack).all()


def test_an_empty_read_decodes_to_an_empty_batch():
    empty = torch.zeros(0, 58 * 36, dtype=torch.uint8)
    assert Int4Codec().decode(empty, 58, 64).shape == (0, 58, 64)
    assert dequantize_rows(empty.reshape(0, 36), 64).shape == (0, 64)
    assert quantize_rows(torch.zeros(0, 64)).shape == (0, 36)


def test_decode_refuses_payloads_of_another_shape():
    with pytest.raises(ValueError, match="int4 payloads"):
        Int4Codec().decode(torch.zeros(2, 35, dtype=torch.uint8), 1, 64)


# -- pinned bytes ----------------------------------------------------------------------------

GOLDEN_VECTORS = torch.tensor([
    [[0.0, 0.25, -0.5, 1.0, 3.0, -2.0, 0.125, 7.5, -7.5, 2.5, 0.5, 1.5],
     [0.3] * 12,
     [-LIMIT, LIMIT, 0.0, 1.0, -1.0, 2.0, 1e-3, -1e-3, 100.0, -100.0, 1e4, -1e4]],
    [[i * 1e-9 for i in range(12)],
     [-0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 5.0, 15.0],
     [float(np.float32(1e-40))] * 6 + [-1.0] * 6],
], dtype=torch.float32)


@pytest.mark.parametrize("path", ["fbgemm", "twin"])
def test_payload_bytes_are_pinned(path, monkeypatch):
    if path == "twin":
        monkeypatch.setattr(int4, "_uses_fbgemm", lambda t: False)
    payloads = Int4Codec().encode(GOLDEN_VECTORS)
    assert_golden("int4_payloads.hex", payloads.numpy(),
                  about="int4 payloads of test_codecs_int4.GOLDEN_VECTORS ([2, 3, 12]), a user "
                        "a line")


# -- torchrec's quantized EmbeddingBagCollection ---------------------------------------------

def _quantized_ebc(weights: torch.Tensor):
    from torch.ao.quantization import PlaceholderObserver, QConfig
    from torchrec.modules.embedding_configs import EmbeddingBagConfig, PoolingType
    from torchrec.modules.embedding_modules import EmbeddingBagCollection
    from torchrec.quant.embedding_modules import EmbeddingBagCollection as QuantEBC

    rows, dim = weights.shape
    ebc = EmbeddingBagCollection(tables=[EmbeddingBagConfig(
        name="users", embedding_dim=dim, num_embeddings=rows, feature_names=["user"],
        pooling=PoolingType.SUM)], device=torch.device("cpu"))
    with torch.no_grad():
        ebc.embedding_bags["users"].weight.copy_(weights)
    ebc.qconfig = QConfig(activation=PlaceholderObserver.with_args(dtype=torch.float),
                          weight=PlaceholderObserver.with_args(dtype=torch.quint4x2))
    quantized = QuantEBC.from_float(ebc)
    table = quantized._emb_modules[0].split_embedding_weights_with_scale_bias(0)[0][0]
    return quantized, table


def _pooled(quantized, bags: list[list[int]]) -> torch.Tensor:
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

    kjt = KeyedJaggedTensor.from_lengths_sync(
        keys=["user"], values=torch.tensor([i for bag in bags for i in bag]),
        lengths=torch.tensor([len(bag) for bag in bags]))
    return quantized(kjt).to_dict()["user"]


@needs_fbgemm
@pytest.mark.parametrize("dim,width", [(8, 16), (64, 48), (256, 144)])
def test_torchrec_stores_our_rows_with_scale_and_bias_first_padded_to_16(dim, width):
    weights = many_rows(40, dim, seed=1)
    _, table = _quantized_ebc(weights)
    ours = Int4Codec().encode(weights.reshape(40, 1, dim)).reshape(40, row_size(dim))
    assert table.shape == (40, width)
    assert torch.equal(to_torchrec_rows(ours, dim), table)
    assert torch.equal(from_torchrec_rows(table, dim), ours)


@needs_fbgemm
@pytest.mark.parametrize("dim", [12, 64])
def test_our_rows_served_by_torchrec_pool_to_the_sums_of_the_decoded_vectors(dim):
    users, per_user = 6, 5
    vectors = many_rows(users * per_user, dim, seed=2).reshape(users, per_user, dim)
    codec = Int4Codec()
    payloads = codec.encode(vectors)
    quantized, table = _quantized_ebc(torch.zeros(users * per_user, dim))
    table.copy_(to_torchrec_rows(payloads.reshape(-1, row_size(dim)), dim))
    bags = [[0, 1, 2], [7], [29, 3, 3, 14], list(range(30))]
    decoded = codec.decode(payloads, per_user, dim).reshape(-1, dim).double()
    expected = torch.stack([decoded[bag].sum(0) for bag in bags]).float()
    torch.testing.assert_close(_pooled(quantized, bags), expected, rtol=1e-5, atol=1e-4)
    assert not torch.equal(expected[0], expected[1])


def test_torchrec_row_conversion_refuses_rows_of_another_width():
    with pytest.raises(ValueError, match="fused rows of width 64"):
        to_torchrec_rows(torch.zeros(2, 35, dtype=torch.uint8), 64)
    with pytest.raises(ValueError, match="torchrec rows of width 64"):
        from_torchrec_rows(torch.zeros(2, 35, dtype=torch.uint8), 64)


# -- on the GPU (python -m pytest -m gpu on the H200) -----------------------------------------

@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dim", DIMS)
def test_cuda_twin_gives_the_cpu_bytes(dim):
    vectors = many_rows(58 * 200, dim, seed=3).reshape(200, 58, dim)
    vectors[0, 0, :4] = torch.tensor([-0.0, 0.0, 1.0, 2.0])
    codec = Int4Codec()
    on_cpu = codec.encode(vectors)
    on_cuda = codec.encode(vectors.cuda())
    assert on_cuda.device.type == "cuda" and torch.equal(on_cuda.cpu(), on_cpu)
    assert_same_floats(codec.decode(on_cpu.cuda(), 58, dim).cpu(), codec.decode(on_cpu, 58, dim))
