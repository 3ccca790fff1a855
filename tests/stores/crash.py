"""Crash testing of any store, by URI: a publisher SIGKILLed at random points while reader
processes read batches of users throughout.

Every version ``k`` holds the same users, and user ``u``'s first value in it is
``k * TAG + u``: a reader knows from any row which version it came from, so a batch that
mixes versions (torn), a version missing users (published incomplete) or a row that does
not match the version the store said it read are all seen.

Processes (all real, all started here):

* a *zygote* (``python -m tests.stores.crash zygote URI USERS SHARD``) imports everything
  once and forks one publisher per round on request, so that a round costs a fork, not an
  interpreter start; the publisher stages, writes shards, publishes and collects versions
  in a loop, resuming a staged version it finds (the export job's shard mechanism);
* readers (``python -m tests.stores.crash read URI USERS STOP``) read random batches until
  the file STOP exists, then print their counts as JSON.

:func:`crash_run` drives them and returns a :class:`CrashReport`; the LMDB test, the Redis
tests and ``scripts/soak_stores.py`` call it with their own URI.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

TAG = 1000
"""Version ``k``'s values are offset by ``k * TAG``: users are fewer than ``TAG``."""
PREFIX = "crash"
BATCH = 64
REPO = Path(__file__).resolve().parents[2]


def version_number(version: str) -> int:
    return int(version[len(PREFIX):].split("-")[0])


def _draft(k: int, shard_size: int):
    from tests.stores.snapshots import draft

    return draft(snapshot_id=f"{PREFIX}{k:07d}-{secrets.token_hex(3)}", codec="fp32",
                 rows=2, dim=4, shard_size=shard_size, created_ms=k)


def publish_loop(uri: str, users: int, shard_size: int, rounds: int | None = None) -> int:
    """Publish versions of ``users`` users until killed (or ``rounds`` were published);
    returns how many were published."""
    from dv365.export.records import records_checksum
    from dv365.export.sink import ShardDone
    from dv365.stores import open_store
    from tests.stores.snapshots import records_of

    ids = np.arange(users, dtype=np.int64)
    published = 0
    with open_store(uri) as store:
        while rounds is None or published < rounds:
            staged_drafts = [m for m in store.staged() if m.id.startswith(PREFIX)]
            if staged_drafts:
                manifest = staged_drafts[0]
            else:
                known = [version_number(v) for v in store._published()
                         if v.startswith(PREFIX)]
                manifest = _draft(max(known, default=0) + 1, shard_size)
            k = version_number(manifest.id)
            staged = store.stage(manifest)
            done = staged.completed_shards()
            for index, start in enumerate(range(0, users, manifest.shard_size)):
                if index in done:
                    continue
                part = ids[start:start + manifest.shard_size]
                records = records_of(manifest, part, tag=k * TAG)
                staged.write(part, records)
                staged.finish_shard(ShardDone(index, len(part), records.nbytes,
                                              records_checksum(part, records), len(part)))
            shards = staged.completed_shards().values()
            staged.publish(manifest.completed(
                users=sum(s.users for s in shards), bytes=sum(s.bytes for s in shards),
                checksum=sum(s.checksum for s in shards) % (1 << 64),
                recomputed=sum(s.recomputed for s in shards)))
            store.gc(keep=3)
            published += 1
    return published


def batch_problem(version: str | None, ids: np.ndarray, vectors, found) -> str | None:
    """Why a batch read is wrong (``None`` when it is wholly version ``version``)."""
    if version is None:
        return None if not found.any() else "rows found without a version"
    if not found.all():
        return f"version {version}: {int((~found).sum())} users missing"
    tags = vectors[:, 0, 0].double().numpy() - ids
    want = version_number(version) * TAG
    if not (tags == want).all():
        seen = sorted({int(t) // TAG for t in tags})
        return f"version {version}: rows of versions {seen}"
    return None


def read_until(uri: str, users: int, stop: str, seed: int, pause_s: float = 0.002) -> dict:
    """Read random batches until the file ``stop`` exists; the counts."""
    from dv365.stores import open_store

    rng = np.random.default_rng(seed)
    counts = {"batches": 0, "torn": 0, "empty": 0, "errors": 0, "corrupt": 0,
              "versions": 0, "problems": []}
    seen: set[str] = set()
    with open_store(uri) as store, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        while not os.path.exists(stop):
            ids = rng.choice(users, size=min(BATCH, users), replace=False)
            try:
                got = store.get(ids)
            except Exception as exc:  # counted, and the reader goes on
                counts["errors"] += 1
                counts["problems"].append(f"{type(exc).__name__}: {exc}"[:200])
                time.sleep(0.01)
                continue
            counts["batches"] += 1
            if got.version is None:
                counts["empty"] += 1
            else:
                seen.add(got.version)
            problem = batch_problem(got.version, ids, got.vectors, got.found)
            if problem:
                counts["torn"] += 1
                counts["problems"].append(problem)
            time.sleep(pause_s)  # leave the publisher CPU on small machines
        counts["corrupt"] = store.corrupt_records
    counts["versions"] = len(seen)
    counts["problems"] = counts["problems"][:20]
    return counts


def check_version(store, version: str, users: int) -> str | None:
    """Why ``version`` is not intact (every user found with its values)."""
    ids = np.arange(users)
    got = store.get(ids, version=version)
    return batch_problem(version, ids, got.vectors, got.found)


class Zygote:
    """A process that forks publishers on request (see the module docstring)."""

    def __init__(self, uri: str, users: int, shard_size: int):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.stores.crash", "zygote", uri, str(users),
             str(shard_size)], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, bufsize=1)
        assert self.proc.stdout.readline().strip() == "ready"

    def _ask(self, line: str) -> str:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def start(self, rounds: int = 0) -> int:
        """Fork a publisher (``rounds`` 0: until killed); its pid."""
        return int(self._ask(f"start {rounds}"))

    def wait(self, pid: int) -> int:
        """Reap publisher ``pid``; its exit status (negative: the signal)."""
        return int(self._ask(f"wait {pid}"))

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def zygote_main(uri: str, users: int, shard_size: int) -> None:
    import importlib

    from dv365.plugins import get_plugins

    for module in ("dv365.export.codecs.floats", "dv365.stores.base", "dv365.stores",
                   "tests.stores.snapshots"):
        importlib.import_module(module)  # once, before forking

    get_plugins()
    print("ready", flush=True)
    for line in sys.stdin:
        command, arg = line.split()
        if command == "start":
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    publish_loop(uri, users, shard_size, int(arg) or None)
                except BaseException as exc:  # noqa: BLE001  (reported by the exit code)
                    print(f"publisher: {exc}", file=sys.stderr, flush=True)
                    code = 1
                os._exit(code)
            print(pid, flush=True)
        elif command == "wait":
            _, status = os.waitpid(int(arg), 0)
            print(-os.WTERMSIG(status) if os.WIFSIGNALED(status)
                  else os.WEXITSTATUS(status), flush=True)


@dataclass
class CrashReport:
    kills: int = 0
    """Publishers SIGKILLed while running."""
    publishes: int = 0
    """Versions published during the run (made current, each in turn)."""
    resumed: int = 0
    """Rounds that found a staged version left by a killed publisher."""
    checks: int = 0
    """Post-kill checks of the current and the previous version."""
    broken: list[str] = field(default_factory=list)
    """Post-kill checks that failed."""
    reader_batches: int = 0
    torn: int = 0
    reader_errors: int = 0
    corrupt: int = 0
    final_publish: bool = False
    """A publisher run to completion after the last kill published and made current."""
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def crash_run(uri: str, *, kills: int, users: int = 500, shard_size: int = 50,
              readers: int = 2, max_wait_s: float = 0.4, seed: int = 0,
              stop_dir: str | os.PathLike = "/tmp") -> CrashReport:
    """Kill a publisher ``kills`` times at random points while ``readers`` processes read;
    after every kill check that the current version and the one before it are intact."""
    from dv365.stores import open_store

    rng = random.Random(seed)
    report = CrashReport()
    started = time.monotonic()
    stop = Path(stop_dir) / f"crash-stop-{os.getpid()}-{secrets.token_hex(3)}"
    zygote = Zygote(uri, users, shard_size)
    reader_procs = [subprocess.Popen(
        [sys.executable, "-m", "tests.stores.crash", "read", uri, str(users), str(stop),
         str(seed * 100 + i)], cwd=REPO, stdout=subprocess.PIPE, text=True)
        for i in range(readers)]
    store = open_store(uri)
    seen_current: set[str] = set()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            while report.kills < kills:
                before = store.current_version()
                if before is not None:
                    store.pin(before, "crash test")
                if any(m.id.startswith(PREFIX) for m in store.staged()):
                    report.resumed += 1
                pid = zygote.start()
                time.sleep(rng.uniform(0.0, max_wait_s))
                os.kill(pid, signal.SIGKILL)
                t_kill = time.monotonic()
                status = zygote.wait(pid)
                if status != -signal.SIGKILL:
                    report.problems.append(f"publisher exited {status} before the kill")
                report.kills += 1
                after = store.current_version()
                for version in {before, after} - {None}:
                    report.checks += 1
                    problem = check_version(store, version, users)
                    if problem:
                        report.broken.append(f"after kill {report.kills}: {problem}")
                if after is not None:
                    seen_current.add(after)
                if before is not None:
                    store.unpin(before)
                if os.environ.get("CRASH_DEBUG"):
                    print(f"round {report.kills}: {time.monotonic() - t_kill:.3f}s after kill",
                          file=sys.stderr)
            pid = zygote.start(rounds=1)
            status = zygote.wait(pid)
            final = store.current_version()
            report.final_publish = (status == 0 and final is not None
                                    and final not in seen_current
                                    and check_version(store, final, users) is None)
            # numbers go up by one a publish, and gc keeps the newest
            report.publishes = version_number(final) if final else 0
    finally:
        stop.touch()
        for proc in reader_procs:
            out, _ = proc.communicate(timeout=60)
            counts = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
            report.reader_batches += counts.get("batches", 0)
            report.torn += counts.get("torn", 0)
            report.reader_errors += counts.get("errors", 0)
            report.corrupt += counts.get("corrupt", 0)
            report.problems += counts.get("problems", [])
        zygote.close()
        store.close()
        stop.unlink(missing_ok=True)
    report.seconds = round(time.monotonic() - started, 1)
    return report


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "zygote":
        zygote_main(args[0], int(args[1]), int(args[2]))
    elif mode == "read":
        print(json.dumps(read_until(args[0], int(args[1]), args[2], int(args[3]))),
              flush=True)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
