"""One process per device (dv365.export.process_executor): two CPU processes write the
single-process snapshot; a process that raises or dies has its shard retried."""

from __future__ import annotations

import pytest

from dv365.errors import UsageError
from dv365.export.parallel import ShardsFailed
from dv365.export.process_executor import ProcessExecutor, visible_device
from tests.export.test_job import split
from tests.export.test_parallel import (AlwaysFail, FailOnce, assert_same_snapshot, export_on,
                                        fresh_uri, reference)

SHARED_FIXTURES = (split,)  # the data and checkpoint of tests/export/test_job.py
TIMEOUT_S = 300  # a hung worker fails its shard instead of hanging the test


@pytest.mark.parametrize("scheme", ["lmdb", "parquet"])
def test_two_processes_write_the_single_process_snapshot(split, scheme):
    store = split.store()
    end = int(store.ts.max()) + 1
    expected_sink, expected = reference(split, store, end, scheme=scheme, shard_size=48)
    executor = ProcessExecutor(["cpu", "cpu"], timeout_s=TIMEOUT_S)
    sink, result = export_on(split, store, end, fresh_uri(scheme), executor, shard_size=48)
    assert_same_snapshot(sink, expected_sink, expected)
    assert result.computed == store.num_users


@pytest.mark.parametrize("crash", [False, True], ids=["raises", "dies"])
def test_a_shard_whose_process_raised_or_died_is_retried(split, tmp_path, crash):
    store = split.store()
    end = int(store.ts.max()) + 1
    expected_sink, expected = reference(split, store, end, shard_size=48)
    fault = FailOnce(tmp_path, {1}, crash=crash)
    executor = ProcessExecutor(["cpu", "cpu"], timeout_s=TIMEOUT_S, fault=fault)
    sink, _ = export_on(split, store, end, fresh_uri(), executor, shard_size=48)
    assert fault.attempts() == 1
    assert_same_snapshot(sink, expected_sink, expected)


def test_a_shard_failing_on_every_attempt_publishes_nothing(split):
    store = split.store()
    end = int(store.ts.max()) + 1
    executor = ProcessExecutor(["cpu", "cpu"], timeout_s=TIMEOUT_S, fault=AlwaysFail({0}))
    with pytest.raises(ShardsFailed, match=r"failed 2 times on 2 processes \(cpu, cpu\)"):
        sink, _ = export_on(split, store, end, uri := fresh_uri(), executor, shard_size=96,
                            retries=1)
    from dv365.stores import open_store

    with open_store(uri) as sink:
        (draft,) = sink.staged()
        assert sink.current_version() is None
        assert sorted(sink.stage(draft).completed_shards()) == [1, 2]


def test_cuda_n_is_the_processes_only_gpu_among_those_it_may_see():
    assert visible_device("cpu", {}) == ("cpu", None)
    assert visible_device("cuda:1", {}) == ("cuda", "1")
    assert visible_device("cuda:1", {"CUDA_VISIBLE_DEVICES": "4,6"}) == ("cuda", "6")
    with pytest.raises(UsageError, match="not visible"):
        visible_device("cuda:2", {"CUDA_VISIBLE_DEVICES": "4,6"})


@pytest.mark.parametrize("devices", [[], ["gpu0"], ["cuda:x"]])
def test_devices_other_than_cpu_or_cuda_n_are_refused(devices):
    with pytest.raises(UsageError) as caught:
        ProcessExecutor(devices)
    assert caught.value.where == "--devices"


def test_a_gpu_torch_cannot_use_is_refused_before_any_worker_starts(monkeypatch):
    import torch

    from dv365.errors import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError) as caught:
        ProcessExecutor(["cpu", "cuda:0"])
    assert caught.value.where == "--devices"
    assert caught.value.message == "this machine has no CUDA device torch can use"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert ProcessExecutor(["cuda:0"]).devices == ["cuda:0"]  # constructing starts nothing
    with pytest.raises(ConfigError, match="cuda:1 does not exist: torch sees 1 CUDA device"):
        ProcessExecutor(["cuda:0", "cuda:1"])
