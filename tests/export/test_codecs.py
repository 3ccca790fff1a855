"""The built-in codec plugin: every codec by name, and the contract checks they share."""

from __future__ import annotations

import types

import pytest
import torch

from dv365.errors import NotFoundError, UsageError
from dv365.export.codecs import codec_named
from dv365.export.codecs.base import Codec, EncodeError


@pytest.mark.parametrize("name,bytes_per_row", [("int4", 64 // 2 + 4), ("fp16", 128),
                                                ("fp32", 256)])
def test_builtin_codecs_by_name(name, bytes_per_row):
    codec = codec_named(name)
    assert isinstance(codec, Codec) and codec.name == name
    assert codec.payload_size(58, 64) == 58 * bytes_per_row


def test_an_unknown_codec_suggests_a_close_name():
    with pytest.raises(NotFoundError, match="int4"):
        codec_named("int5", where="--codec")


def test_check_names_the_user_when_given():
    vectors = torch.zeros(2, 1, 4)
    vectors[1, 0, 3] = float("nan")
    with pytest.raises(EncodeError, match="user 1007's embedding"):
        codec_named("int4").check(vectors, first_user=1007)


def test_check_wants_3d_vectors():
    with pytest.raises(ValueError, match=r"\[B, rows, dim\]"):
        codec_named("fp32").check(torch.zeros(4, 8))


def test_require_is_a_usage_error_with_a_hint():
    with pytest.raises(UsageError, match="choose another --codec"):
        codec_named("fp16").require(0, 8, where="--codec")


def test_the_plugin_example_in_docs_codecs_md_registers_and_round_trips():
    from pathlib import Path

    from dv365.plugins import load_plugins

    docs = (Path(__file__).resolve().parents[2] / "docs" / "codecs.md").read_text()
    source = docs.split("```python\n# dv365_bf16/__init__.py\n", 1)[1].split("```", 1)[0]
    plugin = types.ModuleType("dv365_bf16")
    exec(compile(source, "docs/codecs.md", "exec"), plugin.__dict__)
    codec = codec_named("bf16", plugins=load_plugins(extra=(plugin,), autoload=False))
    vectors = torch.randn(3, 2, 8, generator=torch.Generator().manual_seed(0))
    payloads = codec.encode(vectors)
    assert payloads.shape == (3, codec.payload_size(2, 8))
    torch.testing.assert_close(codec.decode(payloads, 2, 8), vectors, rtol=1e-2, atol=1e-2)
