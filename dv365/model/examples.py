"""Training examples: loading, the time split, history groups and batches.

**Groups** share one history computation: the slices are computed once per group, at the
group's earliest request time, and the encoder output is reused by every example of the group.
``grouping: user_day`` (the default) groups the examples of one user on one UTC day: with the
gap ``g`` every example of the group sees the history before ``min(request_ts) - g``, which is
never later than its own ``request_ts - g`` (no example sees anything inside its own gap) and
at most one day staler than its own cutoff -- the same order of staleness the exported
embedding has in production, where it is refreshed every few hours. Training cost then scales
with user-days, not impressions times history length. ``grouping: request`` groups only the
examples of one user at one request time, so every example sees exactly the history before
its own ``request_ts - g``: on logs where a user's examples crowd into one day, user-day
groups leave many without any history that their own cutoff would give them
(:func:`dv365.data.empty_history.empty_share` measures it).

**Split.** The held-out examples are those at or after one cut in time (:func:`held_out_start`,
from the config's ``validation_from``, ``validation_fraction`` or ``validation_days``);
everything earlier is training data (:mod:`dv365.model.metrics` says how far NE on them can be
trusted).

**Batches** are whole groups: groups are shuffled (by seed and epoch, so a resumed run sees the
same order) and packed until a batch holds about ``batch_size`` examples.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from dv365.data.schema import DatasetMeta, dense_column, label_column
from dv365.data.timeline import TimelineStore
from dv365.data.validate import DatasetReader
from dv365.durations import DAY_MS, moment_text
from dv365.errors import ConfigError, DataError
from dv365.model.backbones.options import ItemFeature
from dv365.model.config import Grouping
from dv365.slices.hashing import rows_of
from dv365.slices.ir import Hashing, Table

HASHED_ITEM_COLUMNS = ("media_id", "author_id", "topic_id")
ENUM_ITEM_COLUMNS = ("media_type", "surface")


@dataclass(frozen=True)
class Examples:
    """Examples in internal form, with their history groups.

    ``sparse`` maps each item feature to table rows (ids hashed, enums as codes); ``labels``
    is ``[n, T]`` float32 in task order; ``group`` indexes ``group_user`` / ``group_ts`` (the
    group's user and the request time its history is computed at); ``grouping`` says how the
    groups were formed (:func:`history_groups`); ``media_id`` is the target item's id as the
    data spells it (retrieval needs the item itself, not its hashed row).
    """

    user_index: np.ndarray
    request_ts: np.ndarray
    sparse: dict[str, np.ndarray]
    dense: np.ndarray
    labels: np.ndarray
    group: np.ndarray
    group_user: np.ndarray
    group_ts: np.ndarray
    grouping: Grouping = "user_day"
    media_id: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.request_ts)

    @property
    def num_groups(self) -> int:
        return len(self.group_user)

    def subset(self, rows: np.ndarray) -> "Examples":
        """The examples ``rows`` (a mask or indices), regrouped."""
        user, ts = self.user_index[rows], self.request_ts[rows]
        group, group_user, group_ts = history_groups(user, ts, self.grouping)
        return Examples(user, ts, {k: v[rows] for k, v in self.sparse.items()},
                        self.dense[rows], self.labels[rows], group, group_user, group_ts,
                        self.grouping, None if self.media_id is None else self.media_id[rows])

    @property
    def history_ts(self) -> np.ndarray:
        """Per example, the request time its history is computed at (its group's)."""
        return self.group_ts[self.group]


def history_groups(user_index: np.ndarray, request_ts: np.ndarray, grouping: Grouping
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group id per example, and each group's user and earliest request time, for
    ``grouping`` ``user_day`` (:func:`user_day_groups`) or ``request`` (one group per
    distinct user and request time)."""
    if grouping == "user_day":
        return user_day_groups(user_index, request_ts)
    if grouping != "request":
        raise ValueError(f"unknown grouping {grouping!r}")
    if len(user_index) == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    pairs = np.stack([user_index.astype(np.int64), request_ts.astype(np.int64)], axis=1)
    uniq, group = np.unique(pairs, axis=0, return_inverse=True)
    return group.reshape(-1).astype(np.int64), uniq[:, 0].copy(), uniq[:, 1].copy()


def user_day_groups(user_index: np.ndarray, request_ts: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group id per example, and each group's user and earliest request time."""
    if len(user_index) == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    day = request_ts // DAY_MS
    day = day - day.min()
    key = user_index.astype(np.int64) * (int(day.max()) + 1) + day
    uniq, group = np.unique(key, return_inverse=True)
    group_user = np.zeros(len(uniq), np.int64)
    group_user[group] = user_index
    group_ts = np.full(len(uniq), np.iinfo(np.int64).max, np.int64)
    np.minimum.at(group_ts, group, request_ts)
    return group.astype(np.int64), group_user, group_ts


def item_features(meta: DatasetMeta, rows: dict[str, int]) -> tuple[ItemFeature, ...]:
    """The target item's sparse features and their table sizes."""
    return (*(ItemFeature(c, rows[c]) for c in HASHED_ITEM_COLUMNS),
            *(ItemFeature(c, max(1, len(meta.values(c)))) for c in ENUM_ITEM_COLUMNS))


def item_rows_of(column: str, ids: np.ndarray, num_rows: int) -> np.ndarray:
    """Rows of an item id table (``media_id``, ``author_id``, ``topic_id``): the ids hashed
    into ``num_rows``, the one mapping every model of an item's id uses."""
    table = Table(name=column, id_column=column, num_rows=num_rows, dim=1,
                  hashing=Hashing(kind="hash", seed=17))
    return rows_of(ids, table)


def load_examples(path: Path, store: TimelineStore, task_names: list[str],
                  item_rows: dict[str, int], grouping: Grouping = "user_day"
                  ) -> tuple[Examples, DatasetMeta, int]:
    """Read an examples dataset; returns the examples (grouped by ``grouping``), its metadata
    and how many were dropped because their user has no timeline in the store."""
    reader = DatasetReader(path, "examples")
    meta = reader.meta
    missing = [t for t in task_names if t not in meta.tasks]
    if missing:
        raise ConfigError(f"the examples declare no task {missing[0]!r}", where="tasks",
                          hint=f"declared: {', '.join(meta.tasks)}")
    parts: dict[str, list[np.ndarray]] = {}
    for batch in reader.batches():
        for name, values in batch.columns.items():
            parts.setdefault(name, []).append(values)
    if not parts:
        raise DataError("the examples dataset holds no rows", where=str(path))
    cols = {name: np.concatenate(v) for name, v in parts.items()}
    user_index = store.user_indices(cols["user_id"], missing=-1)
    keep = user_index >= 0
    dropped = int((~keep).sum())
    if not keep.any():
        raise DataError("no example's user has events in the timeline store", where=str(path))
    sparse = {c: item_rows_of(c, cols[c], item_rows[c]) for c in HASHED_ITEM_COLUMNS}
    for c in ENUM_ITEM_COLUMNS:
        sparse[c] = cols[c].astype(np.int64)
    dense = (np.stack([cols[dense_column(d)] for d in meta.dense], axis=1).astype(np.float32)
             if meta.dense else np.zeros((len(user_index), 0), np.float32))
    labels = np.stack([cols[label_column(t)].astype(np.float32) for t in task_names], axis=1)
    ts = cols["request_ts"].astype(np.int64)
    group, group_user, group_ts = history_groups(user_index, ts, grouping)
    everything = Examples(user_index, ts, sparse, dense, labels, group, group_user, group_ts,
                          grouping, cols["media_id"].astype(np.int64))
    return (everything.subset(keep) if dropped else everything), meta, dropped


def held_out_start(request_ts: np.ndarray, *, validation_from: datetime | None = None,
                   validation_fraction: float | None = None,
                   validation_days: int | None = None) -> int:
    """The first held-out moment (ms): examples with ``request_ts`` at or after it are held
    out. Exactly one choice is given:

    * ``validation_from``: that moment;
    * ``validation_fraction`` f: ``last - floor(f * (last - first))`` over the examples'
      request times;
    * ``validation_days`` N: the UTC midnight N - 1 days before the last example's day, so
      the held-out days are the last example's day and the N - 1 calendar days before it,
      whether or not they hold examples.
    """
    given = [v is not None for v in (validation_from, validation_fraction, validation_days)]
    if sum(given) != 1:
        raise ValueError("give exactly one of validation_from, validation_fraction and "
                         "validation_days")
    first, last = int(request_ts.min()), int(request_ts.max())
    if validation_from is not None:
        return int(round(validation_from.timestamp() * 1000))
    if validation_fraction is not None:
        return last - int(np.floor(validation_fraction * (last - first)))
    return (last // DAY_MS - validation_days + 1) * DAY_MS


def before(examples: Examples, until: datetime, *, where: str = "data.until") -> Examples:
    """The examples whose request is before ``until``; a :class:`ConfigError` at ``where``
    when none is."""
    cut = int(round(until.timestamp() * 1000))
    keep = examples.request_ts < cut
    if not keep.any():
        first = int(examples.request_ts.min())
        raise ConfigError(f"no example is before {_utc_text(cut)}; the first is at "
                          f"{_utc_text(first)}", where=where, hint="a later until")
    return examples if keep.all() else examples.subset(keep)


def split_by_time(examples: Examples, *, where: str = "data",
                  **choice: Any) -> tuple[Examples, Examples]:
    """Training examples and the held-out examples at or after :func:`held_out_start` (one
    ``validation_*`` keyword); a :class:`ConfigError` at ``where`` when either side would be
    empty."""
    ts = examples.request_ts
    start = held_out_start(ts, **choice)
    held = ts >= start
    first, last = int(ts.min()), int(ts.max())
    span = (f"the examples span {_day_count(first, last)} calendar day(s), "
            f"{_utc_text(first)} to {_utc_text(last)}")
    if held.all():
        raise ConfigError(f"{span}; holding out from {_utc_text(start)} leaves nothing to "
                          "train on", where=where,
                          hint="a later validation_from" if choice.get("validation_from")
                          else "hold out less")
    if not held.any():
        raise ConfigError(f"{span}; nothing is at or after {_utc_text(start)} to hold out",
                          where=where, hint="an earlier validation_from")
    return examples.subset(~held), examples.subset(held)


def _day_count(first_ms: int, last_ms: int) -> int:
    return last_ms // DAY_MS - first_ms // DAY_MS + 1


def _utc_text(ms: int) -> str:
    return moment_text(ms, "day" if ms % DAY_MS == 0 else "minute")


def group_batches(examples: Examples, batch_size: int, rng: np.random.Generator | None
                  ) -> list[np.ndarray]:
    """Example indices per batch; whole groups, in shuffled group order when ``rng`` is given."""
    n_groups = examples.num_groups
    order = rng.permutation(n_groups) if rng is not None else np.arange(n_groups)
    rank = np.empty(n_groups, np.int64)
    rank[order] = np.arange(n_groups)
    sizes = np.bincount(examples.group, minlength=n_groups)[order]
    ends = np.cumsum(sizes)
    batch_of_group_in_order = (ends - 1) // batch_size
    batch_of_group = np.empty(n_groups, np.int64)
    batch_of_group[order] = batch_of_group_in_order
    by_example = batch_of_group[examples.group]
    sort = np.lexsort((rank[examples.group], by_example))
    cuts = np.flatnonzero(np.diff(by_example[sort])) + 1
    return [b for b in np.split(sort, cuts) if len(b)]


def head(examples: Examples, n: int | None) -> Examples:
    """The first ``n`` examples in time order (all when ``n`` is None)."""
    if n is None or n >= len(examples):
        return examples
    return examples.subset(np.argsort(examples.request_ts, kind="stable")[:n])

