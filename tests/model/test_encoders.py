"""The user encoders: shapes, the paper's 58/200 ratio, token-wise parameter sharing."""

import pytest
import torch

from dv365.errors import ConfigError
from dv365.model.encoders.fsa import FSA, funnel_widths, slice_mean_pool
from dv365.model.encoders.options import (
    FSAOptions,
    LCEOptions,
    MLPOptions,
    TransformerOptions,
    default_outputs,
)
from dv365.plugins import load_plugins

REGISTRY = load_plugins(autoload=False).encoders
TINY = {"fsa": {"ff_multiplier": 1}, "lce": {}, "mlp": {"hidden": [16]},
        "transformer": {"layers": 1}}


def build(name, num_slices, dim, **options):
    reg = REGISTRY.get(name)
    return reg.factory(reg.options(**options), num_slices=num_slices, dim=dim)


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def test_default_outputs_keep_the_paper_ratio():
    assert default_outputs(200) == 58
    assert default_outputs(20) == 6
    assert default_outputs(1) == 1


def test_fsa_with_paper_shape_gives_50_funnel_and_8_linear_outputs():
    fsa = FSA(FSAOptions(), num_slices=200, dim=4)
    assert (fsa.funnel_outputs, fsa.lce_outputs, fsa.num_outputs) == (50, 8, 58)
    assert fsa(torch.randn(2, 200, 4)).shape == (2, 58, 4)
    assert funnel_widths(200, 3, 2) == [200, 100, 50]


def test_strided_mean_pooling_averages_runs_along_the_slice_axis():
    x = torch.tensor([[[1.0, 2.0, 3.0, 4.0, 5.0]]])
    assert torch.equal(slice_mean_pool(x, 2), torch.tensor([[[1.5, 3.5, 5.0]]]))
    assert torch.equal(slice_mean_pool(x, 1), x)


@pytest.mark.parametrize("name", [*TINY, "identity"])
@pytest.mark.parametrize("view", ["token", "dim"])
def test_every_encoder_maps_slices_to_user_vectors(name, view):
    options = {} if name == "identity" else {**TINY[name], "view": view}
    encoder = build(name, 20, 8, **options)
    out = encoder(torch.randn(3, 20, 8))
    expected = 20 if name == "identity" else 6
    assert encoder.num_outputs == expected and out.shape == (3, expected, 8)
    if name != "identity":
        out.square().sum().backward()
        assert all(p.grad is not None for p in encoder.parameters())


@pytest.mark.parametrize("name", list(TINY))
def test_output_count_is_configurable(name):
    assert build(name, 20, 4, **TINY[name], outputs=12)(torch.randn(1, 20, 4)).shape == (1, 12, 4)


@pytest.mark.parametrize("name", list(TINY))
def test_token_view_shares_parameters_across_embedding_dims(name):
    torch.manual_seed(0)
    encoder = build(name, 20, 8, **TINY[name]).eval()
    # Same parameter count whatever D is ...
    assert n_params(encoder) == n_params(build(name, 20, 32, **TINY[name]))
    # ... and permuting the embedding dims permutes the output dims the same way.
    x, perm = torch.randn(2, 20, 8), torch.randperm(8)
    torch.testing.assert_close(encoder(x[:, :, perm]), encoder(x)[:, :, perm])


@pytest.mark.parametrize("name", ["fsa", "lce", "mlp"])
def test_dim_view_does_not_share_across_dims(name):
    small = build(name, 20, 4, **TINY[name], view="dim")
    large = build(name, 20, 8, **TINY[name], view="dim")
    assert n_params(large) > n_params(small)


def test_fsa_rejects_outputs_that_leave_no_room_for_the_linear_branch():
    with pytest.raises(ConfigError) as info:
        FSA(FSAOptions(outputs=50), num_slices=200, dim=4)
    assert info.value.where == "encoder.outputs"


def test_attention_heads_must_divide_every_width():
    with pytest.raises(ConfigError) as info:
        FSA(FSAOptions(heads=3), num_slices=200, dim=4)
    assert info.value.where == "encoder.heads"


def test_options_forbid_unknown_keys():
    for model in (FSAOptions, LCEOptions, MLPOptions, TransformerOptions):
        with pytest.raises(ValueError):
            model(nonsense=1)
