"""Store fixtures: real LMDB environments in the test's temporary folder."""

from __future__ import annotations

import pytest

from dv365.stores import open_store


@pytest.fixture
def store_uri(tmp_path):
    return f"lmdb://{tmp_path / 'store'}"


@pytest.fixture
def store(store_uri):
    with open_store(store_uri) as opened:
        yield opened
