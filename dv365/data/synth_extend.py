"""More days for the users of a generated data set: ``dv365 synth --extend DATA --days N``.

The world and the users are rebuilt from ``DATA/truth/params.json`` exactly as the generator
drew them (the catalogue's stream, then each block's stream starts with its users' planted
state), so the new days belong to the same users: the same stable interests, favourite
authors, activity rate and burst cadence. What the new days add is drawn from streams of
their own, keyed by the seed, the first new day and the number of days, so the same data and
``--days`` give byte-identical files:

* **Time.** The new period starts at the first UTC midnight at or after the data's end (its
  last event + 1 ms, over ``DATA/events`` and the batches already waiting in the landing
  folder) and lasts ``--days`` days; every new event is strictly after every old one.
* **Activity.** Each user's new events come at the user's own rate (events over the span
  of the original year), in sessions placed like the year's; a user can be idle for the
  whole of a short extension, as a user of the year is on most days.
* **Bursts.** Window boundaries continue each user's cadence (``burst_len``, phase); a window
  inside the original year keeps its topic and share, a later one draws them from a hash of
  (seed, user, window), so a burst that straddles two extensions is one burst.
* **Examples** cover the new days at the generator's rate (``examples_per_user`` over
  ``days``, rounded up).

The output is one *batch* folder in the landing folder (``INCOMING/ext-YYYYMMDD-Nd/``) with
``events/`` and ``examples/`` of new ``part-ext-...`` Parquet files (the dataset's schema and
vocabulary) and ``extension.json`` (:mod:`dv365.data.landing`); existing files are never
touched. ``dv365 pipeline`` collects batches into the data folder.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dv365.atomic_write import staged_directory
from dv365.data.dataset import DatasetWriter
from dv365.data.folder import EVENTS, EXAMPLES, TRUTH, dataset_files
from dv365.data.landing import landing_batches
from dv365.data.metadata import open_parquet
from dv365.data.synth import (
    EVENTS_COMPRESSION,
    EVENTS_PARQUET_OPTIONS,
    EXAMPLES_PARQUET_OPTIONS,
    STREAM_EXTEND,
    AffinityModel,
    SynthConfig,
    Users,
    World,
    _draw_users,
    _examples,
    _key,
    _prepare,
    _stream,
    block_users_stream,
    user_events,
)
from dv365.data.synth_world import LUT_SIZE
from dv365.durations import DAY_MS, moment_text
from dv365.errors import DataError, UsageError
from dv365.paths import display_path

EXTENSION_FILE = "extension.json"
# Days generated after the new ones and left out: enough sessions that where the cut falls
# is like any day of the year.
TRAILING_DAYS = 56
MAX_EXTEND_DAYS = 90


@dataclass(frozen=True)
class Extension:
    """What one extension wrote (also ``extension.json`` of its batch)."""

    batch: Path
    start_ms: int
    end_ms: int
    days: int
    users: int
    events: int
    examples: int


def generator_config(data: Path) -> SynthConfig:
    """The generator arguments ``DATA/truth/params.json`` records (a UsageError when the
    folder was not written by ``dv365 synth`` or by another affinity model)."""
    params_file = data / TRUTH / "params.json"
    if not params_file.is_file():
        raise UsageError("not a data folder written by dv365 synth (no truth/params.json)",
                         where=display_path(data),
                         hint="--extend takes a folder of `dv365 synth OUT`")
    try:
        params = json.loads(params_file.read_text())
        known = {f.name for f in fields(SynthConfig)} - {"model"}
        config = SynthConfig(**{k: v for k, v in params["config"].items() if k in known})
        same_model = params["model"] == json.loads(json.dumps(asdict(AffinityModel())))
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"unreadable generator parameters ({exc})",
                        where=display_path(params_file)) from None
    if not same_model:
        raise UsageError("the data was generated with another affinity model than this "
                         "version's", where=display_path(params_file),
                         hint="extend it with the dv365 version that generated it")
    return config.resolved()


def events_end_ms(folders: list[Path]) -> int:
    """The last event's time + 1 ms over the events datasets ``folders``."""
    last = None
    for folder in folders:
        for file in dataset_files(folder):
            ts = open_parquet(file).read(columns=["ts"]).column("ts")
            if len(ts):
                top = pc.max(ts.cast("int64")).as_py()
                last = top if last is None else max(last, top)
    if last is None:
        raise DataError("the events hold no event", where=display_path(folders[0]))
    return int(last) + 1


def extend(data: str | os.PathLike, days: int, incoming: str | os.PathLike | None = None
           ) -> Extension:
    """Write ``days`` more days of the users of ``data`` as a new batch of ``incoming``
    (default ``DATA/incoming``); see the module docstring."""
    data = Path(data)
    incoming = data / "incoming" if incoming is None else Path(incoming)
    if not 1 <= days <= MAX_EXTEND_DAYS:
        raise UsageError(f"must be in 1..{MAX_EXTEND_DAYS}, got {days}", where="--days")
    config = generator_config(data)
    waiting = [b / EVENTS for b in landing_batches(incoming) if (b / EVENTS).is_dir()]
    old_end = events_end_ms([data / EVENTS, *waiting])
    start_ms = -(-old_end // DAY_MS) * DAY_MS  # the first UTC midnight at or after the end
    end_ms = start_ms + days * DAY_MS
    name = f"ext-{moment_text(start_ms, 'day').replace('-', '')}-{days}d"
    world = _prepare(World.build(config))
    totals = {"events": 0, "examples": 0}
    batch = incoming / name
    with staged_directory(batch, hint="it is there already: collect it, or remove it") as stage:
        events = DatasetWriter(stage / EVENTS, world.events_schema,
                               compression=EVENTS_COMPRESSION,
                               parquet_options=EVENTS_PARQUET_OPTIONS)
        examples = DatasetWriter(stage / EXAMPLES, world.examples_schema, compression="lz4",
                                 parquet_options=EXAMPLES_PARQUET_OPTIONS)
        with events, examples:
            per = config.users_per_block
            for block, first in enumerate(range(0, config.users, per)):
                ev, ex = _extend_block(world, block, first, min(per, config.users - first),
                                       start_ms, days)
                events.write(ev)
                examples.write(ex)
                totals["events"] += ev.num_rows
                totals["examples"] += ex.num_rows
        for folder in (stage / EVENTS, stage / EXAMPLES):
            for file in sorted(folder.glob("part-*.parquet")):
                file.rename(folder / f"part-{name}-{file.name.removeprefix('part-')}")
        result = Extension(batch=batch, start_ms=start_ms, end_ms=end_ms, days=days,
                           users=config.users, **totals)
        record = {k: v for k, v in asdict(result).items() if k != "batch"}
        (stage / EXTENSION_FILE).write_text(json.dumps(
            {"generator": "dv365 synth --extend", "seed": config.seed, **record},
            indent=2, sort_keys=True))
    return result


def _extend_block(world: World, block: int, first: int, n: int, start_ms: int, days: int):
    cfg, m = world.config, world.config.model
    users = _draw_users(world, block_users_stream(cfg.seed, block),
                        np.arange(first, first + n, dtype=np.int64))
    ua = users.arrays
    rng = _stream(cfg.seed, STREAM_EXTEND, start_ms // DAY_MS, days, block)
    # The generator spreads a user's sessions over the whole span given, the last one at its
    # end; here over the new days and TRAILING_DAYS more, and those after the new days are
    # left out, so a user's last new event is wherever their sessions put it (most users
    # are idle on a given day) and a user may have none.
    span = np.full(n, (days + TRAILING_DAYS) * DAY_MS, dtype=np.int64)
    rate = users.n_events / ua.span_ms
    counts = np.maximum(1, rng.poisson(rate * span)).astype(np.int64)

    t0 = ua.start_ms - ua.burst_phase_ms  # where each user's burst windows start
    first_window = (start_ms - t0) // ua.burst_len_ms
    windows = int(math.ceil((days + TRAILING_DAYS) / m.burst_days[0])) + 2
    w = first_window[:, None] + np.arange(windows)[None, :]
    topic, share, stable = _window_draws(world, users, w)
    arrays = ua._replace(
        start_ms=np.full(n, start_ms, dtype=np.int64), span_ms=span,
        burst_phase_ms=start_ms - (t0 + first_window * ua.burst_len_ms),
        burst_topic=topic.ravel(), burst_share=share.ravel(), window_stable=stable.ravel(),
        windows=windows)
    events, _ = user_events(world, arrays, counts, _key(rng))
    ts = events.column("ts").cast("int64").to_numpy()
    events = events.filter(pa.array(ts < start_ms + days * DAY_MS))
    extended = Users(arrays=arrays, n_events=counts, stable_share=users.stable_share)
    per_user = -(-cfg.examples_per_user * days // cfg.days)
    examples = _examples(world, rng, extended, end_ms=start_ms + days * DAY_MS, days=days,
                         per_user=per_user)
    return events, examples


def _window_draws(world: World, users: Users, w: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Burst topic, burst share and the stable topic in turn of each user's windows ``w``
    (absolute indices from the user's first window): the year's own where it drew them, a
    hash of (seed, user, window) after."""
    ua, m, cat = users.arrays, world.config.model, world.catalogue
    n = users.n
    rows = np.arange(n)[:, None]
    inside = w < ua.windows
    at = np.minimum(w, ua.windows - 1) + rows * ua.windows
    h = [_mix(world.config.seed, ua.user_id[:, None], w, j) for j in range(3)]
    lo, hi = m.burst_share
    topic = np.where(inside, ua.burst_topic[at],
                     cat.topic_lut[(h[0] % LUT_SIZE).astype(np.int64)]).astype(np.int32)
    share = np.where(inside, ua.burst_share[at],
                     lo + (hi - lo) * (h[1] >> np.uint64(11)) / float(1 << 53)
                     ).astype(np.float32)
    picks = ua.stable_pick.reshape(n, 64)
    stable = np.where(inside, ua.window_stable[at],
                      np.take_along_axis(picks, (h[2] % 64).astype(np.int64), axis=1)
                      ).astype(np.int32)
    return topic, share, stable


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(seed: int, user: np.ndarray, window: np.ndarray, slot: int) -> np.ndarray:
    """splitmix64 of (seed, user, window, slot): one uint64 per (user, window)."""
    with np.errstate(over="ignore"):
        x = (np.uint64(seed) * _GOLDEN
             ^ user.astype(np.uint64) * np.uint64(0xBF58476D1CE4E5B9)
             ^ window.astype(np.uint64) * np.uint64(0x94D049BB133111EB)
             ^ np.uint64(slot + 1) * _GOLDEN * _GOLDEN)
        x = x + _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))
