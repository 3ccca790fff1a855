"""The built-in codecs, registered as a default plugin through ``dv365_register_codecs``."""

from __future__ import annotations

from dv365.hookspecs import RegisterCodec, hookimpl


def _int4():
    from dv365.export.codecs.int4 import Int4Codec

    return Int4Codec()


def _fp32():
    from dv365.export.codecs.floats import Fp32Codec

    return Fp32Codec()


def _fp16():
    from dv365.export.codecs.floats import Fp16Codec

    return Fp16Codec()


@hookimpl
def dv365_register_codecs(register: RegisterCodec) -> None:
    register("int4", _int4, doc="fbgemm row-wise int4, fp16 scale and bias: D/2 + 4 bytes a row")
    register("fp32", _fp32, doc="fp32, 4 bytes a value: exact")
    register("fp16", _fp16, doc="fp16, 2 bytes a value, range +-65504")


def codec_named(name: str, *, plugins=None, where: str | None = None):
    """The registered codec called ``name`` (a :class:`~dv365.errors.NotFoundError` that
    suggests close names otherwise)."""
    from dv365.plugins import get_plugins

    registration = (plugins or get_plugins()).codecs.get(name, where=where)
    return registration.factory()
