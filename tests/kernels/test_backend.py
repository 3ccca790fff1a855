"""Backends are named: a wrong name is a one-line error listing the choices."""

from __future__ import annotations

import pytest

from dv365.errors import DataError
from dv365.kernels.backend import Backend, resolve


def test_unknown_backend_is_named():
    with pytest.raises(DataError, match="unknown kernel backend 'tpu'"):
        resolve("tpu")
    assert resolve("cpu") is Backend.cpu
