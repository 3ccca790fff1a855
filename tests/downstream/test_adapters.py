"""The downstream adapters: shapes, the learned missing input, GateNet's gates, building by
name from a config section (built-in and third-party), and options errors at their key."""

from __future__ import annotations

import pytest
import torch
from pydantic import BaseModel, ConfigDict

import dv365
from dv365.downstream.adapters.base import Adapter
from dv365.downstream.adapters.build import build_adapter
from dv365.downstream.adapters.hstu_prepend import prepend_jagged, prepend_padded
from dv365.errors import ConfigError
from dv365.plugins import load_plugins

N, D, OUT, B = 3, 8, 6, 5
BUILTINS = ("linear", "hstu_prepend", "gatenet")


@pytest.fixture(scope="module")
def plugins():
    return load_plugins(autoload=False)


def _build(plugins, section, **sizes):
    torch.manual_seed(0)
    return build_adapter(section, plugins=plugins, **{"num_vectors": N, "dim": D,
                                                       "out_dim": OUT, **sizes})


def _run(adapter, vectors, found):
    extra = (torch.randn(vectors.shape[0], OUT),) if adapter.__class__.__name__ == \
        "GateNetAdapter" else ()
    return adapter(vectors, found, *extra)


def _batch(found=(True, False, True, True, False)):
    return torch.randn(len(found), N, D), torch.tensor(found)


# ----------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("section, shape", [
    ({"type": "linear"}, (B, 1, OUT)),
    ({"type": "linear", "outputs": 4}, (B, 4, OUT)),
    ({"type": "hstu_prepend", "tokens": 2}, (B, 2, OUT)),
    ({"type": "gatenet"}, (B, OUT)),
    ({"type": "gatenet", "embedding_gate": "vector", "hidden": [16, 8]}, (B, OUT)),
])
def test_each_adapter_maps_the_vectors_to_its_output_shape(plugins, section, shape):
    adapter = _build(plugins, section)
    assert isinstance(adapter, Adapter)
    assert _run(adapter, *_batch()).shape == shape


@pytest.mark.parametrize("name", BUILTINS)
def test_a_wrong_vector_shape_is_refused(plugins, name):
    adapter = _build(plugins, {"type": name})
    with pytest.raises(ValueError, match=rf"takes vectors \[B, {N}, {D}\]"):
        _run(adapter, torch.randn(B, N + 1, D), torch.ones(B, dtype=torch.bool))


# ------------------------------------------------------------------- the missing input
@pytest.mark.parametrize("name", BUILTINS)
def test_a_user_without_an_embedding_gets_the_learned_missing_input(plugins, name):
    adapter = _build(plugins, {"type": name})
    vectors, found = _batch()
    filled = adapter.fill_missing(vectors, found)
    assert torch.equal(filled[found], vectors[found])
    assert torch.equal(filled[~found], adapter.missing.detach().expand(int((~found).sum()), N, D))
    assert adapter.missing.abs().sum() > 0  # not zeros in disguise
    # the zeros a store returns for a missing user do not reach the output
    zeros = vectors.clone()
    zeros[~found] = 0
    torch.manual_seed(1)
    a = _run(adapter, vectors, found)
    torch.manual_seed(1)
    assert torch.allclose(a[~found], _run(adapter, zeros, found)[~found])


@pytest.mark.parametrize("name", BUILTINS)
def test_the_missing_input_learns_only_from_users_without_an_embedding(plugins, name):
    adapter = _build(plugins, {"type": name})
    vectors, found = _batch()
    _run(adapter, vectors, found).square().sum().backward()
    assert adapter.missing.grad is not None and adapter.missing.grad.abs().sum() > 0
    adapter.zero_grad()
    _run(adapter, vectors, torch.ones(B, dtype=torch.bool)).square().sum().backward()
    assert adapter.missing.grad is None or adapter.missing.grad.abs().sum() == 0


@pytest.mark.parametrize("name", BUILTINS)
def test_gradient_flows_to_the_projection(plugins, name):
    adapter = _build(plugins, {"type": name})
    _run(adapter, *_batch()).square().sum().backward()
    projection = adapter.field_weight if name == "gatenet" else \
        adapter.projection.linear.weight
    assert projection.grad is not None and projection.grad.abs().sum() > 0


def test_an_all_missing_batch_does_not_crash(plugins):
    adapter = _build(plugins, {"type": "linear"})
    out = adapter(torch.zeros(2, N, D), torch.zeros(2, dtype=torch.bool))
    assert torch.isfinite(out).all() and torch.allclose(out[0], out[1])


# ------------------------------------------------------------------------------ GateNet
@pytest.mark.parametrize("gate, width", [("bit", OUT), ("vector", 1)])
def test_gatenet_gates_lie_in_zero_one(plugins, gate, width):
    adapter = _build(plugins, {"type": "gatenet", "embedding_gate": gate, "hidden": [16, 8]})
    vectors, found = _batch()
    user = torch.randn(B, OUT)
    out, gates = adapter.gated(vectors, found, user)
    assert gates["embedding"].shape == (B, N, width)
    assert [g.shape for g in gates["hidden"]] == [(B, 16), (B, 8)]
    assert gates["mix"].shape == (B, OUT)
    for g in [gates["embedding"], *gates["hidden"], gates["mix"]]:
        assert ((g > 0) & (g < 1)).all()
    # out = a * u + (1 - a) * v: an output gate held open passes the user tower through
    with torch.no_grad():
        adapter.mix.bias.fill_(50.0)
    assert torch.allclose(adapter(vectors, found, user), user, atol=1e-6)
    assert not torch.allclose(out, user, atol=1e-3)


def test_gatenet_output_depends_on_the_user_tower_and_the_embedding(plugins):
    adapter = _build(plugins, {"type": "gatenet"})
    vectors, found = _batch((True,) * B)
    user = torch.randn(B, OUT, requires_grad=True)
    adapter(vectors, found, user).sum().backward()
    assert user.grad.abs().sum() > 0
    other = adapter(vectors + 1, found, user)
    assert not torch.allclose(other, adapter(vectors, found, user))
    with pytest.raises(ValueError, match=rf"user must be \[B, {OUT}\]"):
        adapter(vectors, found, torch.randn(B, OUT + 1))


# ------------------------------------------------------------------------ HSTU prepend
def test_prepend_padded_puts_the_tokens_first_and_lengthens_each_user():
    tokens = torch.full((2, 2, 3), -1.0)
    sequence = torch.arange(2 * 4 * 3, dtype=torch.float32).view(2, 4, 3)
    out, lengths = prepend_padded(tokens, sequence, torch.tensor([4, 1]))
    assert out.shape == (2, 6, 3) and lengths.tolist() == [6, 3]
    assert (out[:, :2] == -1).all() and torch.equal(out[:, 2:], sequence)


def test_prepend_jagged_puts_each_users_tokens_before_its_events():
    values = torch.arange(5, dtype=torch.float32).view(5, 1)  # users of 2, 0 and 3 events
    offsets = torch.tensor([0, 2, 2, 5])
    tokens = -torch.arange(1, 4, dtype=torch.float32).view(3, 1, 1).expand(3, 2, 1)
    out, new_offsets = prepend_jagged(tokens, values, offsets)
    assert new_offsets.tolist() == [0, 4, 6, 11]
    assert out.view(-1).tolist() == [-1, -1, 0, 1, -2, -2, -3, -3, 2, 3, 4]
    with pytest.raises(ValueError, match="do not fit"):
        prepend_jagged(tokens, values, offsets[:-1])


def test_hstu_prepend_tokens_are_differentiable_through_the_jagged_batch(plugins):
    adapter = _build(plugins, {"type": "hstu_prepend", "tokens": 2})
    tokens = adapter(*_batch((True, False)))
    out, _ = prepend_jagged(tokens, torch.randn(3, OUT), torch.tensor([0, 1, 3]))
    out.sum().backward()
    assert adapter.projection.linear.weight.grad.abs().sum() > 0
    assert adapter.missing.grad.abs().sum() > 0


# ------------------------------------------------------ by name, options, third parties
class ScaledOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    factor: float = 1.0


class Scaled(Adapter):
    """The mean DV365 vector, scaled (a third-party adapter)."""

    def __init__(self, options: ScaledOptions, *, num_vectors, dim, out_dim):
        super().__init__(num_vectors=num_vectors, dim=dim, out_dim=out_dim)
        self.factor = options.factor

    def forward(self, vectors, found):
        return self.factor * self.fill_missing(vectors, found).mean(1)


class _Plugin:
    @dv365.hookimpl
    def dv365_register_adapters(self, register):
        register("scaled", Scaled, options=ScaledOptions, doc="scaled mean (test plugin)")


def test_a_third_party_adapter_registers_and_is_built_by_name_from_a_config():
    loaded = load_plugins(extra=(_Plugin(),), autoload=False)
    assert loaded.adapters.get("scaled").doc == "scaled mean (test plugin)"
    assert set(BUILTINS) <= set(loaded.adapters.names())
    adapter = build_adapter({"type": "scaled", "factor": 2.0}, num_vectors=N, dim=D,
                            out_dim=D, plugins=loaded)
    vectors = torch.randn(2, N, D)
    out = adapter(vectors, torch.tensor([True, False]))
    assert torch.allclose(out[0], 2 * vectors[0].mean(0))
    assert torch.allclose(out[1], 2 * adapter.missing.detach().mean(0))
    with pytest.raises(ConfigError) as info:
        build_adapter({"type": "scaled", "factr": 2.0}, num_vectors=N, dim=D, out_dim=D,
                      plugins=loaded)
    assert info.value.where == "adapter.factr" and "did you mean 'factor'" in info.value.render()


@pytest.mark.parametrize("section, where, text", [
    ({"type": "linear", "outputz": 2}, "adapter.outputz", "unknown key"),
    ({"type": "linear", "outputs": 0}, "adapter.outputs", "greater than 0"),
    ({"type": "gatenet", "embedding_gate": "bits"}, "adapter.embedding_gate", "bit"),
    ({"type": "gatnet"}, "adapter.type", "did you mean 'gatenet'"),
    ({"outputs": 1}, "adapter.type", "missing key"),
])
def test_options_errors_name_the_key(plugins, section, where, text):
    with pytest.raises(ConfigError) as info:
        build_adapter(section, num_vectors=N, dim=D, out_dim=OUT, plugins=plugins)
    assert info.value.where == where and text in info.value.render()


def test_a_config_file_is_named_in_the_error(plugins):
    with pytest.raises(ConfigError) as info:
        build_adapter({"type": "hstu_prepend", "token": 2}, num_vectors=N, dim=D,
                      out_dim=OUT, plugins=plugins, key="ranking.adapter", file="eval.yaml")
    assert info.value.where == "eval.yaml: ranking.adapter.token"
    assert "did you mean 'tokens'" in info.value.render()
