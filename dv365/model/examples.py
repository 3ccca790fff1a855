"""Training examples: loading, the time split, user-day groups and batches.

**User-level dedup.** Examples of the same user on the same UTC day form a *group* that shares
one history computation: the slices are computed once per group, at the group's earliest
request time, and the encoder output is reused by every example of the group. With the gap
``g`` every example of the group therefore sees the history before ``min(request_ts) - g``,
which is never later than its own ``request_ts - g`` (no example sees anything inside its own
gap) and at most one day staler than its own cutoff -- the same order of staleness the
exported embedding has in production, where it is refreshed every few hours. Training cost
then scales with user-days, not impressions times history length.

**Split.** Examples of the last ``validation_days`` UTC days that hold examples are the
held-out split; everything earlier is training data.

**Batches** are whole groups: groups are shuffled (by seed and epoch, so a resumed run sees the
same order) and packed until a batch holds about ``batch_size`` examples.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dv365.data.schema import DatasetMeta, dense_column, label_column
from dv365.data.timeline import TimelineStore
from dv365.data.validate import DatasetReader
from dv365.durations import DAY_MS
from dv365.errors import ConfigError, DataError
from dv365.model.backbones.options import ItemFeature
from dv365.slices.hashing import rows_of
from dv365.slices.ir import Hashing, Table

HASHED_ITEM_COLUMNS = ("media_id", "author_id", "topic_id")
ENUM_ITEM_COLUMNS = ("media_type", "surface")


@dataclass(frozen=True)
class Examples:
    """Examples in internal form, with their user-day groups.

    ``sparse`` maps each item feature to table rows (ids hashed, enums as codes); ``labels``
    is ``[n, T]`` float32 in task order; ``group`` indexes ``group_user`` / ``group_ts``.
    """

    user_index: np.ndarray
    request_ts: np.ndarray
    sparse: dict[str, np.ndarray]
    dense: np.ndarray
    labels: np.ndarray
    group: np.ndarray
    group_user: np.ndarray
    group_ts: np.ndarray

    def __len__(self) -> int:
        return len(self.request_ts)

    @property
    def num_groups(self) -> int:
        return len(self.group_user)

    def subset(self, rows: np.ndarray) -> "Examples":
        """The examples ``rows`` (a mask or indices), regrouped."""
        user, ts = self.user_index[rows], self.request_ts[rows]
        group, group_user, group_ts = user_day_groups(user, ts)
        return Examples(user, ts, {k: v[rows] for k, v in self.sparse.items()},
                        self.dense[rows], self.labels[rows], group, group_user, group_ts)


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


def load_examples(path: Path, store: TimelineStore, task_names: list[str], item_rows: dict[str, int]
                  ) -> tuple[Examples, DatasetMeta, int]:
    """Read an examples dataset; returns the examples, its metadata and how many were dropped
    because their user has no timeline in the store."""
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
    sparse = {}
    for c in HASHED_ITEM_COLUMNS:
        table = Table(name=c, id_column=c, num_rows=item_rows[c], dim=1,
                      hashing=Hashing(kind="hash", seed=17))
        sparse[c] = rows_of(cols[c], table)
    for c in ENUM_ITEM_COLUMNS:
        sparse[c] = cols[c].astype(np.int64)
    dense = (np.stack([cols[dense_column(d)] for d in meta.dense], axis=1).astype(np.float32)
             if meta.dense else np.zeros((len(user_index), 0), np.float32))
    labels = np.stack([cols[label_column(t)].astype(np.float32) for t in task_names], axis=1)
    ts = cols["request_ts"].astype(np.int64)
    group, group_user, group_ts = user_day_groups(user_index, ts)
    everything = Examples(user_index, ts, sparse, dense, labels, group, group_user, group_ts)
    return (everything.subset(keep) if dropped else everything), meta, dropped


def split_by_time(examples: Examples, validation_days: int) -> tuple[Examples, Examples]:
    """Training examples and the held-out examples of the last ``validation_days`` days."""
    days = np.unique(examples.request_ts // DAY_MS)
    if len(days) <= validation_days:
        raise ConfigError(f"the examples span {len(days)} day(s); holding out "
                          f"{validation_days} leaves nothing to train on",
                          where="data.validation_days")
    first_held_out = days[-validation_days] * DAY_MS
    held = examples.request_ts >= first_held_out
    return examples.subset(~held), examples.subset(held)


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

