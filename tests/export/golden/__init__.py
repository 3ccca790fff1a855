"""Pinned bytes of the stored formats: one hex line per user (a payload or a record).

A golden file changes only when a stored format changes on purpose, which makes every
existing snapshot unreadable; to accept such a change:
``DV365_UPDATE_GOLDEN=1 pytest tests/export``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

FOLDER = Path(__file__).parent


def assert_golden(name: str, rows: np.ndarray, *, about: str) -> None:
    """``rows`` (``uint8 [B, P]``) equal the hex lines of ``golden/<name>``; ``about`` is its
    first line (a ``#`` comment saying what the bytes are)."""
    path = FOLDER / name
    lines = [bytes(row).hex() for row in np.ascontiguousarray(rows, dtype=np.uint8)]
    if os.environ.get("DV365_UPDATE_GOLDEN"):
        path.write_text("".join(f"{line}\n" for line in [f"# {about}", *lines]))
    pinned = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    assert len(lines) == len(pinned), f"{name}: {len(lines)} rows, {len(pinned)} pinned"
    for i, (got, want) in enumerate(zip(lines, pinned)):
        assert got == want, f"{name} row {i}:\n got  {got}\n want {want}"
