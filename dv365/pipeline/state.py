"""The pipeline's state database (SQLite): its cycles and their steps.

A *cycle* is one pass of the steps (collect, train, export, verify, publish, gc); a *step*
row holds its inputs (and their hash), its outputs (JSON), its status (``running``,
``done``, ``skipped``, ``failed``), when it started and ended, and the error that stopped
it. A step counts as done only when its row says so: every change is one transaction, in
WAL mode with full syncs, so a process killed at any point leaves the rows of the last
committed change and nothing half written. A second process is kept out by an exclusive
lock on ``<state>.lock`` (released by the kernel when its holder dies, SIGKILL included).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from dv365.errors import DataError, UsageError
from dv365.paths import display_path

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cycles (
    id INTEGER PRIMARY KEY,
    started_ms INTEGER NOT NULL,
    ended_ms INTEGER,
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    snapshot TEXT,
    error TEXT
);
CREATE TABLE IF NOT EXISTS steps (
    cycle INTEGER NOT NULL REFERENCES cycles (id),
    name TEXT NOT NULL,
    position INTEGER NOT NULL,
    inputs TEXT NOT NULL,
    inputs_hash TEXT NOT NULL,
    outputs TEXT,
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'skipped', 'failed')),
    started_ms INTEGER NOT NULL,
    ended_ms INTEGER,
    attempts INTEGER NOT NULL DEFAULT 1,
    error TEXT,
    PRIMARY KEY (cycle, name)
);
"""

FINISHED = ("done", "skipped")


def inputs_hash(inputs: dict[str, Any]) -> str:
    """BLAKE2b-160 of the inputs' canonical JSON."""
    text = json.dumps(inputs, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=20).hexdigest()


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Cycle:
    """One row of ``cycles``."""

    id: int
    started_ms: int
    ended_ms: int | None
    status: str
    snapshot: str | None
    error: str | None


@dataclass(frozen=True)
class Step:
    """One row of ``steps``."""

    cycle: int
    name: str
    position: int
    inputs: dict[str, Any]
    inputs_hash: str
    outputs: dict[str, Any] | None
    status: str
    started_ms: int
    ended_ms: int | None
    attempts: int
    error: str | None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


class PipelineState:
    """The state database at ``path`` (created with its folder when missing)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            with self._transaction():
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                row = self.db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
                if row is None:
                    self.db.execute("INSERT INTO meta VALUES ('schema', ?)",
                                    (str(SCHEMA_VERSION),))
                elif row[0] != str(SCHEMA_VERSION):
                    raise DataError(f"a pipeline state of schema {row[0]}, this dv365 reads "
                                    f"{SCHEMA_VERSION}", where=display_path(self.path))
        except sqlite3.DatabaseError as exc:
            raise DataError(f"not a pipeline state database ({exc})",
                            where=display_path(self.path)) from None

    def __enter__(self) -> "PipelineState":
        return self

    def __exit__(self, *exc: object) -> None:
        self.db.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the runner's lock; a :class:`UsageError` when another process holds it."""
        lock = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                raise UsageError(f"another pipeline cycle is running (pid {holder})",
                                 where=display_path(self.path),
                                 hint="wait for it; a killed one leaves no lock") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield
        finally:
            os.close(fd)  # releases the lock

    # ------------------------------------------------------------------------- cycles
    def cycles(self, limit: int | None = None) -> list[Cycle]:
        """Cycles, newest first."""
        sql = "SELECT * FROM cycles ORDER BY id DESC" + (" LIMIT ?" if limit else "")
        rows = self.db.execute(sql, (limit,) if limit else ()).fetchall()
        return [Cycle(*row) for row in rows]

    def unfinished_cycle(self) -> Cycle | None:
        """The newest cycle, when it is not done (it was killed or a step failed)."""
        newest = self.cycles(1)
        return newest[0] if newest and newest[0].status != "done" else None

    def new_cycle(self, started_ms: int) -> Cycle:
        with self._transaction():
            cur = self.db.execute("INSERT INTO cycles (started_ms, status) VALUES (?, 'running')",
                                  (started_ms,))
        return self.cycle(int(cur.lastrowid))

    def cycle(self, cycle_id: int) -> Cycle:
        row = self.db.execute("SELECT * FROM cycles WHERE id = ?", (cycle_id,)).fetchone()
        return Cycle(*row)

    def reopen_cycle(self, cycle_id: int) -> None:
        with self._transaction():
            self.db.execute("UPDATE cycles SET status = 'running', error = NULL, ended_ms = NULL "
                            "WHERE id = ?", (cycle_id,))

    def finish_cycle(self, cycle_id: int, snapshot: str | None, ended_ms: int) -> None:
        with self._transaction():
            self.db.execute("UPDATE cycles SET status = 'done', snapshot = ?, ended_ms = ?, "
                            "error = NULL WHERE id = ?", (snapshot, ended_ms, cycle_id))

    def fail_cycle(self, cycle_id: int, error: str, ended_ms: int) -> None:
        with self._transaction():
            self.db.execute("UPDATE cycles SET status = 'failed', error = ?, ended_ms = ? "
                            "WHERE id = ?", (error, ended_ms, cycle_id))

    # -------------------------------------------------------------------------- steps
    def steps(self, cycle_id: int) -> list[Step]:
        rows = self.db.execute("SELECT * FROM steps WHERE cycle = ? ORDER BY position",
                               (cycle_id,)).fetchall()
        return [_step(row) for row in rows]

    def step(self, cycle_id: int, name: str) -> Step | None:
        row = self.db.execute("SELECT * FROM steps WHERE cycle = ? AND name = ?",
                              (cycle_id, name)).fetchone()
        return None if row is None else _step(row)

    def last_finished(self, name: str, *, status: str = "done",
                      before: int | None = None) -> Step | None:
        """The newest step ``name`` of that status (of a cycle before ``before``)."""
        row = self.db.execute(
            "SELECT * FROM steps WHERE name = ? AND status = ? AND cycle < ? "
            "ORDER BY cycle DESC LIMIT 1",
            (name, status, before if before is not None else 1 << 62)).fetchone()
        return None if row is None else _step(row)

    def done_cycles_from(self, cycle_id: int) -> int:
        """Completed cycles from cycle ``cycle_id`` on (that one included)."""
        return int(self.db.execute("SELECT COUNT(*) FROM cycles WHERE status = 'done' AND "
                                   "id >= ?", (cycle_id,)).fetchone()[0])

    def start_step(self, cycle_id: int, name: str, position: int,
                   inputs: dict[str, Any]) -> None:
        """Record that ``name`` starts (again) on ``inputs``."""
        text, digest = json.dumps(inputs, sort_keys=True), inputs_hash(inputs)
        with self._transaction():
            self.db.execute(
                "INSERT INTO steps (cycle, name, position, inputs, inputs_hash, status, "
                "started_ms) VALUES (?, ?, ?, ?, ?, 'running', ?) ON CONFLICT (cycle, name) DO "
                "UPDATE SET inputs = excluded.inputs, inputs_hash = excluded.inputs_hash, "
                "status = 'running', started_ms = excluded.started_ms, ended_ms = NULL, "
                "outputs = NULL, error = NULL, attempts = attempts + 1",
                (cycle_id, name, position, text, digest, now_ms()))

    def finish_step(self, cycle_id: int, name: str, outputs: dict[str, Any], *,
                    status: str = "done") -> None:
        """Record the step's outputs: from now on it is done (or skipped)."""
        assert status in FINISHED
        with self._transaction():
            self.db.execute("UPDATE steps SET status = ?, outputs = ?, ended_ms = ? "
                            "WHERE cycle = ? AND name = ?",
                            (status, json.dumps(outputs, sort_keys=True), now_ms(), cycle_id,
                             name))

    def fail_step(self, cycle_id: int, name: str, error: str) -> None:
        with self._transaction():
            self.db.execute("UPDATE steps SET status = 'failed', error = ?, ended_ms = ? "
                            "WHERE cycle = ? AND name = ?", (error, now_ms(), cycle_id, name))


def _step(row: tuple) -> Step:
    cycle, name, position, inputs, digest, outputs, status, started, ended, attempts, error = row
    return Step(cycle, name, position, json.loads(inputs), digest,
                None if outputs is None else json.loads(outputs), status, started, ended,
                attempts, error)
