"""``dv365 export``: a full export and a refresh to an LMDB store, one-line refusals that leave
the store as it was, and resuming after the exporter is killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from dv365.cli.app import main
from dv365.export.request_time import DataSpan
from dv365.plugins import get_plugins
from tests.export.test_job import split
from tests.export.test_ray_executor import local_ray

SHARED_FIXTURES = (split, local_ray)  # the data and checkpoint of tests/export/test_job.py,
# the test session's local Ray

pytestmark = pytest.mark.skipif("lmdb" not in get_plugins().stores.names(),
                                reason="the lmdb store is not registered in this checkout")


def _store(uri: str):
    from dv365.stores import open_store

    return open_store(uri)


@pytest.fixture
def cache(split, monkeypatch):
    monkeypatch.setenv("DV365_CACHE_DIR", str(split.cache))
    return split.cache


def _export(split, data, uri, *extra) -> list[str]:
    return ["export", "--checkpoint", str(split.checkpoint), "--data", str(data), "--to", uri,
            *extra]


def test_export_then_refresh_to_lmdb(split, cache, tmp_path, capsys):
    uri = f"lmdb://{tmp_path / 'store'}"
    assert main(_export(split, split.old, uri, "--at", "end", "--shard-size", "64")) == 0, \
        capsys.readouterr().err
    out = capsys.readouterr().out
    old_users, new_users = split.store("old").num_users, split.store("new").num_users
    assert f"exported {old_users:,} users in " in out and "users/s" in out and "bytes" in out
    with _store(uri) as store:
        parent = store.manifest()
        assert parent.at_ms == DataSpan.of(split.store("old")).end_ms
    assert main(_export(split, split.new, uri, "--at", "end", "--since", parent.id)) == 0, \
        capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"exported {new_users:,} users" in out and f"from {parent.id}" in out
    assert "recomputed " in out
    with _store(uri) as store:
        refreshed = store.manifest()
        assert refreshed.parent == parent.id and refreshed.users == new_users
    full = f"lmdb://{tmp_path / 'full'}"
    assert main(_export(split, split.new, full, "--at", "end")) == 0
    with _store(full) as store:
        assert store.manifest().checksum == refreshed.checksum


@pytest.mark.parametrize("case, extra, code, message", [
    ("time before the data", ["--at", "2024-01-01"], 1, "before the data's first event"),
    ("time after the data", ["--at", "2027-01-01"], 1, "after the data's end"),
    ("not a time", ["--at", "yesterday"], 2, "cannot read 'yesterday' as a time"),
    ("unknown codec", ["--at", "end", "--codec", "int5"], None, "int5"),
    ("unknown device", ["--at", "end", "--device", "tpu"], 2, "unknown device"),
    ("unknown since", ["--at", "end", "--since", "nope"], None, "no version 'nope'"),
])
def test_bad_input_is_one_line_and_changes_nothing(split, cache, tmp_path, capsys, case, extra,
                                                   code, message):
    uri = f"lmdb://{tmp_path / 'store'}"
    assert main(_export(split, split.old, uri, "--at", "end")) == 0
    with _store(uri) as store:
        before = store.current_version()
    capsys.readouterr()
    rc = main(_export(split, split.old, uri, *extra))
    err = capsys.readouterr().err.strip()
    assert rc != 0 and (code is None or rc == code), (rc, err)
    assert message in err and len(err.splitlines()) <= 2, err
    with _store(uri) as store:
        assert store.current_version() == before and store.staged() == []


def test_an_unknown_scheme_or_a_missing_checkpoint_is_refused(split, cache, tmp_path, capsys):
    assert main(_export(split, split.old, "s3://bucket/x", "--at", "end")) != 0
    assert "s3" in capsys.readouterr().err
    args = ["export", "--checkpoint", str(tmp_path / "none.pt"), "--data", str(split.old),
            "--to", f"lmdb://{tmp_path / 'store'}", "--at", "end"]
    assert main(args) == 2
    assert "no such checkpoint file" in capsys.readouterr().err


def _kill_after_shards(args, uri: str, cache, shards: int, *, attempts: int,
                       wait_s: float) -> int | None:
    """Run ``dv365 ARGS`` in a process and SIGKILL it once its draft in ``uri`` has
    ``shards`` complete shards; how many it had (``None``: it finished first each time)."""
    env = {**os.environ, "DV365_CACHE_DIR": str(cache)}
    for _ in range(attempts):
        proc = subprocess.Popen([sys.executable, "-m", "dv365.cli.app", *args], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + wait_s
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                with _store(uri) as store:
                    drafts = store.staged()
                    done = len(store.stage(drafts[0]).completed_shards()) if drafts else 0
                if shards <= done:
                    proc.send_signal(signal.SIGKILL)
                    return done
                time.sleep(0.005)
        finally:
            proc.wait()
    return None


@pytest.mark.slow
def test_an_export_killed_with_sigkill_resumes_from_its_last_complete_shard(split, cache,
                                                                           tmp_path, capsys):
    reference = f"lmdb://{tmp_path / 'reference'}"
    assert main(_export(split, split.new, reference, "--at", "end", "--shard-size", "8")) == 0
    with _store(reference) as store:
        expected = store.manifest()

    uri = f"lmdb://{tmp_path / 'store'}"
    # Batches of one user (an encoder call each), ten shards: slow enough to be caught.
    args = _export(split, split.new, uri, "--at", "end", "--shard-size", "20",
                   "--batch-size", "1")
    killed_after = _kill_after_shards(args, uri, cache, 2, attempts=3, wait_s=120)
    assert killed_after is not None, "the export finished before it could be killed"
    with _store(uri) as store:
        assert store.current_version() is None and len(store.staged()) == 1
    # Resumed with another batch size: records do not depend on it, the identity does not.
    assert main([*args[:-2], "--batch-size", "64"]) == 0
    assert f"resumed after {killed_after} completed shards" in capsys.readouterr().out
    with _store(uri) as store:
        resumed = store.manifest()
        assert (resumed.users, resumed.checksum, resumed.bytes) == (
            expected.users, expected.checksum, expected.bytes)
        assert store.staged() == []
        ids = [int(u) for batch, _ in store.scan() for u in batch]
        assert ids == sorted(set(ids)) and len(ids) == expected.users


# ------------------------------------------------------------------ across workers
def _manifest(uri: str):
    with _store(uri) as store:
        return store.manifest()


@pytest.fixture
def single_process(split, cache, tmp_path):
    """The manifest of the single-process export of the new data at its end, shards of 48."""
    uri = f"lmdb://{tmp_path / 'single'}"
    assert main(_export(split, split.new, uri, "--at", "end", "--shard-size", "48")) == 0
    return _manifest(uri)


def _same(m, expected) -> bool:
    return (m.users, m.bytes, m.checksum) == (expected.users, expected.bytes, expected.checksum)


def test_export_on_two_processes_publishes_the_single_process_snapshot(
        split, cache, tmp_path, capsys, single_process):
    uri = f"lmdb://{tmp_path / 'store'}"
    capsys.readouterr()
    assert main(_export(split, split.new, uri, "--at", "end", "--shard-size", "48",
                        "--workers", "2")) == 0, capsys.readouterr().err
    assert "on 2 processes (cpu, cpu)" in capsys.readouterr().out
    assert _same(_manifest(uri), single_process)


def test_export_on_ray_publishes_the_single_process_snapshot(split, cache, tmp_path, capsys,
                                                             single_process, local_ray):
    uri = f"lmdb://{tmp_path / 'store'}"
    capsys.readouterr()
    # this process is connected to the test's Ray already: --ray uses that connection
    assert main(_export(split, split.new, uri, "--at", "end", "--shard-size", "48",
                        "--ray", "local", "--workers", "2")) == 0, capsys.readouterr().err
    assert "on 2 Ray workers" in capsys.readouterr().out
    assert _same(_manifest(uri), single_process)


@pytest.mark.parametrize("extra, message", [
    (["--ray", "auto", "--devices", "cpu,cpu"], "Ray places its workers itself"),
    (["--gpus-per-worker", "1"], "--gpus-per-worker: error: GPUs per worker are for Ray"),
    (["--devices", "cpu,cpu", "--workers", "3"], "--workers: error: 3 workers but 2 devices"),
    (["--devices", "tpu:0"], "unknown device 'tpu:0'"),
    # told at once: Ray's own connect retries for minutes
    (["--ray", "127.0.0.1:1"], "--ray: error: cannot reach the Ray cluster at 127.0.0.1:1"),
    (["--ray", "head-node"], "--ray: error: cannot read 'head-node' as a Ray address"),
])
def test_contradicting_worker_options_are_refused_in_one_line(split, cache, tmp_path, capsys,
                                                               extra, message):
    rc = main(_export(split, split.old, f"lmdb://{tmp_path / 'store'}", "--at", "end", *extra))
    err = capsys.readouterr().err.strip()
    assert rc == 2 and message in err and len(err.splitlines()) <= 2, err
    assert not (tmp_path / "store").exists()


def test_ray_asked_for_and_not_installed_is_one_line_naming_the_extra(split, cache, tmp_path,
                                                                      capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    rc = main(_export(split, split.old, f"lmdb://{tmp_path / 'store'}", "--at", "end",
                      "--ray", "local"))
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "Ray is not installed" in err and "dv365[ray]" in err, err


@pytest.mark.slow
def test_an_export_on_two_processes_killed_with_sigkill_resumes(split, cache, tmp_path, capsys,
                                                                 single_process):
    uri = f"lmdb://{tmp_path / 'store'}"
    args = _export(split, split.new, uri, "--at", "end", "--shard-size", "48",
                   "--batch-size", "1", "--workers", "2")
    killed_after = _kill_after_shards(args, uri, cache, 1, attempts=1, wait_s=300)
    assert killed_after is not None, "the export finished before it could be killed"
    time.sleep(1)  # the workers die with it (PR_SET_PDEATHSIG)
    with _store(uri) as store:
        assert store.current_version() is None and len(store.staged()) == 1
        left = len(store.stage(store.staged()[0]).completed_shards())
    assert main([*args[:-4], "--batch-size", "64", "--workers", "2"]) == 0
    assert f"resumed after {left} completed shards" in capsys.readouterr().out
    assert _same(_manifest(uri), single_process)
