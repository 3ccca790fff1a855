"""The HSTU encoder: the paper's layer, equation by equation, on jagged batches."""

import math

import numpy as np

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from dv365.downstream.hstu import Hstu, last_outputs, time_bucket
from dv365.downstream.hstu_options import HstuOptions

torch.set_num_threads(1)
S = 1000  # ms per second


def _model(seed=0, **kw) -> Hstu:
    torch.manual_seed(seed)
    kw = {"dim": 8, "layers": 2, "heads": 2, "attention_dim": 3, "linear_dim": 4,
          "max_len": 6, **kw}
    model = Hstu(HstuOptions(**kw)).eval()
    with torch.no_grad():  # biases far from their small initial values, so they matter
        for layer in model.layers:
            layer.position_bias.normal_()
            layer.time_bias.normal_()
            layer.uvqk.normal_(std=0.5)
    return model


def _batch(lengths, dim=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    total = sum(lengths)
    values = torch.randn(total, dim, generator=g)
    offsets = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()])
    gaps = torch.randint(0, 5 * 86400 * S, (total,), generator=g)
    ts, query = [], []
    for b, n in enumerate(lengths):
        t = 1_600_000_000_000 + b * 10**9 + gaps[offsets[b]:offsets[b + 1]].cumsum(0)
        ts.append(t)
        query.append(int(t[-1]) + 3600 * S if n else 1_700_000_000_000)
    return values, offsets, torch.cat(ts), torch.tensor(query)


def _by_hand(model: Hstu, x, ts, query_ts):
    """One user's outputs straight from the equations of HstuLayer's docstring, with loops."""
    o = model.options
    n, N = x.shape[0], o.max_len
    following = [int(t) for t in ts[1:]] + [int(query_ts)]
    for layer in model.layers:
        w = F.silu(F.layer_norm(x, (o.dim,), eps=1e-6) @ layer.uvqk)
        hv, hq = o.heads * o.linear_dim, o.heads * o.attention_dim
        u, v, q, k = w[:, :hv], w[:, hv:2 * hv], w[:, 2 * hv:2 * hv + hq], w[:, 2 * hv + hq:]
        heads = []
        for h in range(o.heads):
            qh = q[:, h * o.attention_dim:(h + 1) * o.attention_dim]
            kh = k[:, h * o.attention_dim:(h + 1) * o.attention_dim]
            vh = v[:, h * o.linear_dim:(h + 1) * o.linear_dim]
            rows = []
            for i in range(n):
                acc = torch.zeros(o.linear_dim)
                for j in range(i + 1):
                    gap = abs(following[i] - int(ts[j])) / S
                    bucket = min(int(math.floor(math.log(max(gap, 1.0)) / 0.301)), o.time_buckets)
                    rab = layer.position_bias[N - 1 + j - i] + layer.time_bias[bucket]
                    acc = acc + F.silu(qh[i] @ kh[j] + rab) / N * vh[j]
                rows.append(acc)
            heads.append(torch.stack(rows))
        attended = torch.cat(heads, dim=1)
        x = layer.output(F.layer_norm(attended, (hv,), eps=1e-6) * u) + x
    return x


def test_time_buckets_are_floor_log_gap_over_0_301():
    seconds = torch.tensor([0.0, 1.0, 2.0, 10.0, 1e6, -10.0, 0.5, 1e30])
    assert time_bucket(seconds, 128).tolist() == [0, 0, 2, 7, 45, 7, 0, 128]
    assert time_bucket(torch.tensor([1e6]), 40).tolist() == [40]


def test_options_defaults_and_limits():
    o = HstuOptions()
    assert (o.dim, o.layers, o.heads, o.max_len, o.dropout, o.time_buckets) == (
        64, 2, 1, 500, 0.0, 128)
    assert (o.attention_dim, o.linear_dim) == (64, 64)
    assert HstuOptions(dim=16, attention_dim=4).linear_dim == 16
    assert HstuOptions(max_len=2000).max_len == 2000
    with pytest.raises(ValidationError):
        HstuOptions(max_len=2001)
    with pytest.raises(ValidationError):
        HstuOptions(width=3)
    with pytest.raises(ValidationError):
        o.dim = 3


def test_outputs_follow_the_equations():
    model = _model()
    values, offsets, ts, query = _batch([5])
    with torch.no_grad():
        got = model(values, offsets, ts, query)
        want = _by_hand(model, values, ts, query[0])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_attention_is_silu_over_max_len_not_a_softmax():
    model = _model(max_len=4)
    layer = model.layers[0]
    q = torch.tensor([[[[1.0, 0, 0]], [[2.0, 1, 0]]]])  # [B=1, n=2, h=1, d=3]
    k = torch.tensor([[[[0.5, 0, 0]], [[1.0, -1, 0]]]])
    buckets = torch.tensor([[[3, 0], [5, 1]]])
    i = torch.arange(2)
    relative = 4 - 1 + i[None, :] - i[:, None]
    with torch.no_grad():
        a = layer.attention(q, k, buckets, relative)[0, 0]
        p, w = layer.position_bias, layer.time_bias
        s10 = 2.0 * 0.5 + p[2] + w[5]
        s11 = 2.0 * 1.0 - 1.0 + p[3] + w[1]
        s00 = 0.5 + p[3] + w[3]
    torch.testing.assert_close(a, torch.stack([
        torch.stack([F.silu(s00) / 4, torch.tensor(0.0)]),
        torch.stack([F.silu(s10) / 4, F.silu(s11) / 4])]))
    # Without a softmax, scaling the scores' inputs rescales the weights non-uniformly and
    # a row does not sum to one.
    with torch.no_grad():
        layer.position_bias.zero_()
        layer.time_bias.zero_()
        once = layer.attention(q, k, buckets, relative)[0, 0]
        thrice = layer.attention(3 * q, k, buckets, relative)[0, 0]
    assert not torch.allclose(once.sum(1), torch.ones(2))
    torch.testing.assert_close(thrice[0, 0], F.silu(torch.tensor(1.5)) / 4)
    assert thrice[1, 0] / once[1, 0] > 3  # silu(3s)/silu(s) > 3 for s > 0


def test_a_later_event_does_not_change_earlier_outputs():
    model = _model()
    values, offsets, ts, query = _batch([6])
    with torch.no_grad():
        base = model(values, offsets, ts, query)
        changed = values.clone()
        changed[4] += 5.0
        assert torch.equal(model(changed, offsets, ts, query)[:4], base[:4])
        assert not torch.allclose(model(changed, offsets, ts, query)[4], base[4])
        # Row i's time bias reads the next event's time (the reference's t'_i), so moving
        # event 4 in time changes rows 3 and on, never rows 0..2.
        later = ts.clone()
        later[4:] += 10**7 * S
        moved = model(values, offsets, later, query + 10**7 * S)
        assert torch.equal(moved[:3], base[:3])
        assert not torch.allclose(moved[3], base[3])


def test_a_user_alone_equals_that_user_next_to_a_longer_one():
    model = _model()
    alone = _batch([3], seed=2)
    longer = _batch([6], seed=3)
    values = torch.cat([alone[0], longer[0]])
    offsets = torch.tensor([0, 3, 9])
    ts = torch.cat([alone[2], longer[2]])
    query = torch.cat([alone[3], longer[3]])
    with torch.no_grad():
        by_itself = model(*alone)
        together = model(values, offsets, ts, query)
    torch.testing.assert_close(together[:3], by_itself, rtol=1e-5, atol=1e-5)


def test_jagged_batch_equals_one_user_at_a_time():
    model = _model()
    lengths = [4, 0, 1, 6, 0, 2]
    values, offsets, ts, query = _batch(lengths, seed=4)
    with torch.no_grad():
        out = model(values, offsets, ts, query)
        for b, n in enumerate(lengths):
            s, e = int(offsets[b]), int(offsets[b + 1])
            one = model(values[s:e], torch.tensor([0, n]), ts[s:e], query[b:b + 1])
            torch.testing.assert_close(out[s:e], one, rtol=1e-5, atol=1e-5)
        last, has = last_outputs(out, offsets)
    assert has.tolist() == [n > 0 for n in lengths]
    torch.testing.assert_close(last[3], out[int(offsets[4]) - 1])
    assert torch.equal(last[1], torch.zeros(8)) and torch.equal(last[4], torch.zeros(8))


def test_empty_sequences():
    model = _model()
    values, offsets = torch.zeros(0, 8), torch.zeros(4, dtype=torch.long)
    ts, query = torch.zeros(0, dtype=torch.long), torch.full((3,), 10**12)
    out = model(values, offsets, ts, query)
    assert out.shape == (0, 8)
    last, has = last_outputs(out, offsets)
    assert last.shape == (3, 8) and not has.any() and not last.any()


def test_bad_batches_are_refused():
    model = _model()
    values, offsets, ts, query = _batch([7])
    with pytest.raises(ValueError, match="more than max_len = 6"):
        model(values, offsets, ts, query)
    values, offsets, ts, query = _batch([2, 3])
    with pytest.raises(ValueError, match="query_ts\\[1\\] is before"):
        model(values, offsets, ts, torch.tensor([int(query[0]), int(ts[3])]))
    backwards = ts.clone()
    backwards[3] = backwards[2] - 1
    with pytest.raises(ValueError, match="back in time at row 3"):
        model(values, offsets, backwards, query)
    # A new sequence may start earlier than the previous one ended.
    model(values, offsets, torch.tensor([5, 6, 1, 2, 3]), torch.tensor([7, 4]))
    with pytest.raises(ValueError, match="values must be"):
        model(values[:, :4], offsets, ts, query)


def test_gradients_reach_every_parameter_and_the_inputs():
    model = _model(dropout=0.1).train()
    values, offsets, ts, query = _batch([3, 0, 5])
    values.requires_grad_(True)
    last, _ = last_outputs(model(values, offsets, ts, query), offsets)
    last.square().sum().backward()
    assert values.grad is not None and values.grad.abs().sum() > 0
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_last_is_the_last_rows_of_the_full_forward_and_has_the_same_gradients():
    torch.manual_seed(3)
    options = HstuOptions(dim=8, layers=2, heads=2, max_len=9)
    hstu = Hstu(options)
    lengths = [4, 0, 9, 1]
    offsets = torch.tensor([0, *np.cumsum(lengths)])
    values = torch.randn(int(offsets[-1]), 8, requires_grad=True)
    ts = torch.cat([torch.sort(torch.randint(0, 10**9, (n,)))[0] for n in lengths])
    query = torch.full((4,), 2 * 10**9)
    full, has = last_outputs(hstu(values, offsets, ts, query), offsets)
    (grad_full,) = torch.autograd.grad(full.square().sum(), values)
    fast, has_fast = hstu.last(values, offsets, ts, query)
    (grad_fast,) = torch.autograd.grad(fast.square().sum(), values)
    assert torch.equal(has, has_fast) and not bool(has[1])
    assert torch.allclose(full, fast, atol=1e-6) and torch.equal(fast[1], torch.zeros(8))
    assert torch.allclose(grad_full, grad_fast, atol=1e-6)
    bias = hstu.layers[0].time_bias
    (g_bias,) = torch.autograd.grad(hstu.last(values, offsets, ts, query)[0].sum(), bias)
    assert g_bias.abs().sum() > 0
