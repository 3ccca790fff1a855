"""Bit rot in an events file: flip one bit, read the file as dv365 does, say what came out.

A small events file is written the way the generator writes one (:class:`DatasetWriter`
with the generator's Parquet options, uncompressed or zstd), then each flip is one copy of
its bytes with one bit changed, read through :class:`DatasetReader`. Every flip ends as:

* ``clean``: read without error, declaration and values identical to the original's;
* ``refused``: a :class:`DataError` whose ``where`` names the file;
* ``unlocated``: a :class:`DataError` that does not name the file;
* ``changed``: read without error but with a different declaration or different values
  (silent corruption, the outcome page checksums exist to prevent);
* ``internal``: any other exception.

:func:`flip_run` counts them; ``tests/data/test_validate.py`` and ``scripts/soak_bit_rot.py``
call it (a few hundred flips, and as many as asked).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dv365.data.dataset import DatasetWriter
from dv365.data.schema import DatasetMeta, events_schema
from dv365.data.synth import EVENTS_PARQUET_OPTIONS
from dv365.data.validate import DatasetReader
from dv365.errors import DataError
from tests.data.conftest import EVENTS_META, good_events, table

OUTCOMES = ("clean", "refused", "unlocated", "changed", "internal")


@dataclass
class FlipCounts:
    """How many flips were tried and ended in each of :data:`OUTCOMES`, with a few examples
    of the bad outcomes."""

    tried: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    examples: list[str] = field(default_factory=list)

    def __getattr__(self, outcome: str) -> int:
        if outcome in OUTCOMES:
            return self.outcomes[outcome]
        raise AttributeError(outcome)

    @property
    def ok(self) -> bool:
        return not (self.unlocated or self.changed or self.internal)

    def to_dict(self) -> dict:
        return {"tried": self.tried, **self.outcomes, "examples": self.examples}


def events_file(folder: Path, compression: str, rows: int = 300, seed: int = 0) -> Path:
    """One events file of ``rows`` valid events, written as the generator writes events."""
    tbl = table(good_events(rows, seed=seed, users=20), events_schema(EVENTS_META))
    with DatasetWriter(folder, events_schema(EVENTS_META), compression=compression,
                       parquet_options=EVENTS_PARQUET_OPTIONS, row_group_size=rows // 2) as w:
        w.write(tbl)
    return w.files[0]


def read_values(path: Path) -> tuple[DatasetMeta, dict[str, np.ndarray]]:
    """The declaration and the internal-form columns of an events dataset."""
    reader = DatasetReader(path, "events")
    batches = [b.columns for b in reader.batches()]
    return reader.meta, {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def _same(a: tuple[DatasetMeta, dict], b: tuple[DatasetMeta, dict]) -> bool:
    return a[0] == b[0] and a[1].keys() == b[1].keys() and all(
        np.array_equal(a[1][k], b[1][k], equal_nan=a[1][k].dtype.kind == "f") for k in a[1])


def flip_outcome(path: Path, original: bytes, reference, pos: int, bit: int) -> tuple[str, str]:
    """Write ``original`` with bit ``bit`` of byte ``pos`` flipped to ``path`` and read it."""
    data = bytearray(original)
    data[pos] ^= 1 << bit
    path.write_bytes(bytes(data))
    try:
        values = read_values(path)
    except DataError as exc:
        if exc.where is not None and exc.where.startswith(str(path)):
            return "refused", exc.render()
        return "unlocated", exc.render()
    except Exception as exc:  # noqa: BLE001 -- any other exception is what is counted
        return "internal", f"{type(exc).__name__}: {exc}"
    return ("clean", "") if _same(values, reference) else ("changed", "values differ")


def flip_run(folder: Path, compression: str, flips: int, *, seed: int = 0,
             every_byte: bool = False) -> FlipCounts:
    """``flips`` single-bit flips of a fresh events file at random positions.

    With ``every_byte`` the positions are spread evenly over the whole file instead (one
    flip per position, the bit chosen at random), so that footer, headers and pages are all
    hit whatever the seed.
    """
    source = events_file(folder / "source", compression)
    original = source.read_bytes()
    reference = read_values(source)
    target = folder / "flipped" / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    if every_byte:
        positions = np.linspace(0, len(original) - 1, flips).astype(int).tolist()
    else:
        positions = [rng.randrange(len(original)) for _ in range(flips)]
    counts = FlipCounts()
    for pos in positions:
        bit = rng.randrange(8)
        outcome, text = flip_outcome(target, original, reference, pos, bit)
        counts.tried += 1
        counts.outcomes[outcome] += 1
        if outcome not in ("clean", "refused") and len(counts.examples) < 10:
            counts.examples.append(f"{compression} byte {pos} bit {bit}: {outcome}: {text}")
    return counts
