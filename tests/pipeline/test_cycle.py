"""One cycle: collect, train when due, export (incremental while the model is unchanged),
verify, publish, gc; a failed step stops the cycle, leaves the current snapshot current, and
the next run resumes the cycle at that step."""

from __future__ import annotations

import pytest

from dv365.errors import DataError
from dv365.pipeline import steps
from dv365.pipeline.config import load_pipeline_config
from dv365.data.timeline import TimelineStore
from dv365.pipeline.cycle import StepFailed
from dv365.pipeline.state import PipelineState
from dv365.stores import open_store
from tests.pipeline.conftest import cycle, land, outputs, write_pipeline


def _store(path):
    return open_store(load_pipeline_config(path).store)


def test_cycles_export_in_full_after_training_and_incrementally_between(generated, tmp_path):
    path = write_pipeline(tmp_path, generated, retrain={"every_cycles": 3})
    # Every user of the generated year acts in its last hours: two new days take the
    # export's time past them, so that the next refresh sees only the new days' activity.
    land(path, days=2)
    first = cycle(path)
    assert [s.status for s in first.steps] == ["done"] * 6
    assert outputs(first, "collect")["batches"] == ["ext-20260101-2d"]
    assert outputs(first, "train")["reason"] == "no checkpoint yet"
    full = outputs(first, "export")
    assert full["parent"] is None and full["recomputed"] == full["users"] == 40
    assert outputs(first, "verify")["sampled"] == 8
    with _store(path) as store:
        assert store.current_version() == first.snapshot == full["version"]

    land(path)
    second = cycle(path)
    # the cached arrays of the first cycle's files, extended by the collected day; gc
    # then drops the first cycle's entry, so the cache holds one store, not one a cycle
    assert outputs(second, "collect")["timeline"] == "extended"
    cache = load_pipeline_config(path).cache_dir
    (stale,) = outputs(second, "gc")["timeline_removed"]
    assert not (cache / stale).exists()
    assert [p.name for p in cache.iterdir() if p.name != "digests"] == [
        TimelineStore.open(load_pipeline_config(path).data, cache_dir=cache).path.name]
    assert outputs(second, "train")["due"] is False  # every 3 cycles
    refresh = outputs(second, "export")
    assert refresh["parent"] == first.snapshot
    assert 0 < refresh["recomputed"] < refresh["users"] == 40
    assert outputs(second, "publish")["previous"] == first.snapshot

    # nothing new: the current snapshot has these inputs; nothing is exported or published
    third = cycle(path)
    assert outputs(third, "collect")["batches"] == []
    assert outputs(third, "collect")["timeline"] == "cached"
    assert [s.status for s in third.steps if s.name in ("export", "publish")] == [
        "skipped", "skipped"]
    assert third.snapshot == second.snapshot

    # three cycles done since the last training: fine-tuned 6 more steps, a full export
    land(path)
    fourth = cycle(path)
    tuned = outputs(fourth, "train")
    assert tuned["due"] and (tuned["resumed_from"], tuned["step"]) == (6, 12)
    assert outputs(fourth, "export")["parent"] is None
    assert outputs(fourth, "gc")["removed"] == [first.snapshot]  # gc_keep: 2
    with _store(path) as store:
        assert [v.manifest.id for v in store.versions()] == [second.snapshot, fourth.snapshot]
        assert store.current_version() == fourth.snapshot and store.staged() == []
    with PipelineState(load_pipeline_config(path).state_path) as state:
        assert [(c.id, c.status, c.snapshot) for c in reversed(state.cycles())] == [
            (1, "done", first.snapshot), (2, "done", second.snapshot),
            (3, "done", second.snapshot), (4, "done", fourth.snapshot)]


def test_a_failed_step_keeps_the_current_snapshot_and_the_rerun_resumes_there(
        generated, tmp_path, monkeypatch):
    path = write_pipeline(tmp_path, generated)
    first = cycle(path)
    land(path)

    def broken(*args, **kwargs):
        raise DataError("the records' checksum 0x1 is not the manifest's 0x2", where="store")

    monkeypatch.setattr(steps, "verify_snapshot", broken)
    with pytest.raises(StepFailed) as failed:
        cycle(path)
    assert failed.value.render() == ("store: error: cycle 2: step verify failed: the records' "
                                     "checksum 0x1 is not the manifest's 0x2")
    config = load_pipeline_config(path)
    with _store(path) as store:
        assert store.current_version() == first.snapshot
        assert len(store.versions()) == 2  # published, not current
    with PipelineState(config.state_path) as state:
        assert state.cycle(2).status == "failed" and "verify" in state.cycle(2).error
        assert [(s.name, s.status) for s in state.steps(2)] == [
            ("collect", "done"), ("train", "skipped"), ("export", "done"),
            ("verify", "failed")]

    monkeypatch.undo()
    resumed = cycle(path)
    assert resumed.cycle == 2 and resumed.resumed
    assert resumed.reused == ["collect", "train", "export"]
    with _store(path) as store:
        assert len(store.versions()) == 2 and store.current_version() == resumed.snapshot
    with PipelineState(config.state_path) as state:
        assert state.step(2, "verify").attempts == 2


def test_the_export_step_runs_on_workers_and_publishes_the_same_records(generated, tmp_path):
    single = write_pipeline(tmp_path / "single", generated)
    workers = write_pipeline(tmp_path / "workers", generated,
                             export={"shard_size": 8, "workers": 2})
    reports = []
    for path in (single, workers):
        land(path, days=2)
        reports.append(cycle(path))
    one, two = (outputs(r, "export") for r in reports)
    assert two["users"] == one["users"] == 40
    with _store(single) as a, _store(workers) as b:
        ma, mb = a.manifest(one["version"]), b.manifest(two["version"])
        assert (ma.checksum, ma.users, ma.bytes) == (mb.checksum, mb.users, mb.bytes)


def test_contradicting_export_workers_are_refused_at_their_key(generated, tmp_path):
    path = write_pipeline(tmp_path, generated, export={"devices": ["cpu", "cpu"],
                                                       "workers": 3})
    land(path)
    with pytest.raises(StepFailed, match="3 workers but 2 devices") as info:
        cycle(path)
    assert "export.workers" in str(info.value)


def test_an_unreachable_store_stops_the_cycle_before_any_step(generated, tmp_path):
    import socket

    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = write_pipeline(tmp_path, generated, store=f"redis://:secret@127.0.0.1:{port}/0")
    land(path)
    landing = load_pipeline_config(path).landing_dir
    waiting = sorted(landing.iterdir())
    with pytest.raises(StepFailed) as failed:
        cycle(path)
    text = failed.value.render()
    assert "\n" not in text and "secret" not in text
    assert text.startswith(f"redis://:***@127.0.0.1:{port}/0: error: cycle 1: the store did "
                           "not answer before the steps: ")
    assert sorted(landing.iterdir()) == waiting  # nothing collected, nothing trained
    assert not (tmp_path / "run").exists()
    with PipelineState(load_pipeline_config(path).state_path) as state:
        assert state.cycle(1).status == "failed" and state.cycle(1).error.startswith("store: ")
        assert state.steps(1) == []
