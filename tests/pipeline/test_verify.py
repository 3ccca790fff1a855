"""Verifying a snapshot: counts, the checksum, and a sample recomputed within the codec's
tolerance."""

from __future__ import annotations

import pytest

from dv365.data.timeline import TimelineStore
from dv365.errors import DataError
from dv365.pipeline import verify
from dv365.pipeline.config import load_pipeline_config
from dv365.pipeline.verify import verify_snapshot
from dv365.stores import open_store
from tests.pipeline.conftest import cycle, write_pipeline


@pytest.fixture(scope="module")
def published(generated, tmp_path_factory):
    """A store with one snapshot of a tiny trained model, and the data it was exported from."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DV365_CACHE_DIR", str(tmp_path_factory.mktemp("hashes")))
        path = write_pipeline(tmp_path_factory.mktemp("verify"), generated, verify_sample=0)
        report = cycle(path)
    config = load_pipeline_config(path)
    return config, report.snapshot, TimelineStore.open(config.data, cache_dir=config.cache_dir)


def test_a_good_snapshot_passes_and_the_sample_is_fixed_by_the_version(published):
    config, version, data = published
    with open_store(config.store) as store:
        first = verify_snapshot(store, version, data, sample=12)
        again = verify_snapshot(store, version, data, sample=12)
        manifest = store.manifest(version)
    assert first == again and first.users == data.num_users == 40 and first.sampled == 12
    assert first.checksum == f"{manifest.checksum:#018x}"
    assert 0 < first.worst_error_ratio <= 1  # int4 is lossy, within its tolerance


def test_a_recomputed_embedding_that_differs_is_refused(published, monkeypatch):
    config, version, data = published
    real = verify.embed_users
    monkeypatch.setattr(verify, "embed_users", lambda *a, **k: real(*a, **k) + 0.5)
    with open_store(config.store) as store, pytest.raises(DataError) as error:
        verify_snapshot(store, version, data, sample=4)
    assert "differs from the recomputed embedding" in error.value.message
    assert "more than the int4 codec allows" in error.value.message


def test_a_checksum_that_differs_from_the_manifest_is_refused(published, monkeypatch):
    config, version, data = published
    monkeypatch.setattr(verify, "records_checksum", lambda ids, records, start=0: start + 1)
    with open_store(config.store) as store, pytest.raises(DataError, match="not the manifest's"):
        verify_snapshot(store, version, data, sample=0)
