"""Shards on Ray (dv365.export.ray_executor), on a local Ray of 2 CPUs started by the test:
1 and 2 workers write the single-process snapshot; a shard whose actor raised or died is
retried; a cluster that cannot place the workers fails in bounded time; Ray missing is one
line."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from dv365.errors import UsageError
from dv365.export.parallel import ShardsFailed
from dv365.export.ray_executor import RayExecutor, import_ray
from tests.export.test_job import split
from tests.export.test_parallel import (FailOnce, assert_same_snapshot, export_on, fresh_uri,
                                        reference)

SHARED_FIXTURES = (split,)  # the data and checkpoint of tests/export/test_job.py
ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 300  # every wait on Ray is bounded: a hang fails the test instead


@pytest.fixture(scope="session")
def local_ray():
    """A local Ray instance of 2 CPUs for the whole session; its workers import this
    checkout. No usage statistics, no token file in the home folder, a short temporary
    folder (Ray's socket paths have a length limit)."""
    ray = pytest.importorskip("ray")
    saved = {k: os.environ.get(k) for k in ("RAY_USAGE_STATS_ENABLED", "RAY_AUTH_MODE")}
    os.environ.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, ignore_reinit_error=True,
             log_to_driver=False, _temp_dir=temp,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled"}})
    try:
        yield ray
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def ray_executor(**options) -> RayExecutor:
    return RayExecutor(timeout_s=TIMEOUT_S, ready_timeout_s=TIMEOUT_S, **options)


@pytest.mark.parametrize("workers, scheme", [(1, "lmdb"), (2, "lmdb"), (2, "parquet")])
def test_ray_workers_write_the_single_process_snapshot(split, local_ray, workers, scheme):
    store = split.store()
    end = int(store.ts.max()) + 1
    expected_sink, expected = reference(split, store, end, scheme=scheme, shard_size=48)
    sink, result = export_on(split, store, end, fresh_uri(scheme),
                             ray_executor(workers=workers), shard_size=48)
    assert_same_snapshot(sink, expected_sink, expected)
    assert result.computed == store.num_users


@pytest.mark.parametrize("crash", [False, True], ids=["raises", "dies"])
def test_a_shard_whose_actor_raised_or_died_is_retried(split, local_ray, tmp_path, crash):
    store = split.store()
    end = int(store.ts.max()) + 1
    expected_sink, expected = reference(split, store, end, shard_size=48)
    fault = FailOnce(tmp_path, {2}, crash=crash)
    sink, _ = export_on(split, store, end, fresh_uri(), ray_executor(workers=2, fault=fault),
                        shard_size=48)
    assert fault.attempts() == 1
    assert_same_snapshot(sink, expected_sink, expected)


def test_workers_the_cluster_cannot_place_fail_in_bounded_time(split, local_ray):
    store = split.store()
    executor = RayExecutor(workers=1, gpus_per_worker=1, ready_timeout_s=3, timeout_s=10)
    with pytest.raises(ShardsFailed, match="no Ray worker was ready within 3 s"):
        export_on(split, store, int(store.ts.max()) + 1, fresh_uri(), executor,
                  shard_size=96, retries=0)


def test_without_ray_installed_asking_for_it_is_one_line_with_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(UsageError, match="Ray is not installed") as caught:
        import_ray()
    assert caught.value.where == "--ray" and "dv365[ray]" in caught.value.hint
