"""KuaiRand (Gao et al., CIKM 2022) interaction logs -> UniTi events and examples.

Input: a folder (searched recursively) or a single log file. In a folder every ``*.csv``,
``*.tsv`` and ``*.parquet`` file is a log (KuaiRand's official ``log_standard_*.csv`` and
``log_random_*.csv``, a third party's ``train.parquet``) except KuaiRand's side files
(``video_features*``, ``user_features*``) and hidden files; a single file is a log whatever its
name. Text logs may be comma, tab, semicolon or pipe separated (sniffed, or forced). An optional
``video_features_basic*`` side file in the folder (next to a single log file) gives authors, tags
and video types. All logs are held in memory at once (peak about 650 bytes per impression: 1.4 GB
for 2 M), which suits KuaiRand-Pure and -1K (about 12 M impressions); KuaiRand-27K (over
300 M) needs a machine with memory to match.

The mapping (docs/importers.md has the full table):

* Every log row is an impression: one **implicit** event at ``time_ms`` with
  ``dwell_time = play_time_ms / 1000`` and ``video_duration = duration_ms / 1000``, and one
  **example** with ``request_ts = time_ms`` (so the impression itself is not in the history
  the model sees for it, which is strictly before ``request_ts``).
* Each positive flag is also an **explicit** event at the same time, action:
  ``is_like`` like, ``is_comment`` comment, ``is_forward`` share, ``is_follow`` follow,
  ``is_profile_enter`` profile_visit, ``is_hate`` dislike.
* ``surface`` is ``tab_<tab>``: KuaiRand publishes tab ids (0-14) but not their names.
* ``media_id = video_id``; ``author_id`` from the log row when it has a value, else from the
  video features, else ``UNKNOWN_AUTHOR`` (-1, with a note); ``topic_id`` is the first tag of
  the video (the row's, else the video features') as an integer (KuaiRand tags are category
  ids from 1), 0 when the tag is missing or not a number; ``media_type`` is ``ad`` for
  ``video_type == AD`` in the video features, ``video`` otherwise or without them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dv365.console import progress
from dv365.data.importers.columns import require_columns
from dv365.data.importers.delimited import (
    TextFormat,
    header_names,
    parse_delimiter,
    read_text_columns,
    sniff_format,
)
from dv365.data.importers.imported_log import (
    UNKNOWN_AUTHOR,
    ImportedLog,
    ImportSummary,
    side_table_positions,
    write_data_folder,
)
from dv365.data.schema import (
    EXPLICIT,
    IMPLICIT,
    TS_MAX_MS,
    TS_MIN_MS,
    dense_column,
    label_column,
)
from dv365.errors import DataError, NotFoundError, UsageError

SOURCE = "kuairand"

# Flag column -> explicit action, in the order explicit events of one impression are written.
ACTION_FLAGS: dict[str, str] = {
    "is_like": "like",
    "is_comment": "comment",
    "is_forward": "share",
    "is_follow": "follow",
    "is_profile_enter": "profile_visit",
    "is_hate": "dislike",
}
ACTIONS = list(ACTION_FLAGS.values())
MEDIA_TYPES = ["video", "ad"]
MAX_TAB = 126  # a vocabulary holds at most 127 values

# A view shorter than this that does not finish the video is a skip (swiped away).
SKIP_BELOW_MS = 3_000

FLAG_COLUMNS = (*ACTION_FLAGS, "is_click", "long_view", "is_rand")
LOG_COLUMNS: dict[str, pa.DataType] = {
    "user_id": pa.int64(),
    "video_id": pa.int64(),
    "time_ms": pa.int64(),
    "tab": pa.int64(),
    "play_time_ms": pa.int64(),
    "duration_ms": pa.int64(),
    **{flag: pa.int64() for flag in FLAG_COLUMNS},
}
OPTIONAL_LOG_COLUMNS: dict[str, pa.DataType] = {"author_id": pa.int64(), "tag": pa.string()}
VIDEO_COLUMNS: dict[str, pa.DataType] = {"video_id": pa.int64(), "author_id": pa.int64()}
OPTIONAL_VIDEO_COLUMNS: dict[str, pa.DataType] = {"video_type": pa.string(), "tag": pa.string()}

TASKS = {
    "like": "binary", "comment": "binary", "share": "binary", "follow": "binary",
    "profile_visit": "binary", "dislike": "binary", "click": "binary", "long_view": "binary",
    "complete": "binary", "skip": "binary", "watch_time": "regression",
}
DENSE = ["video_duration", "is_rand"]

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")  # of logs and side files in a folder, any case
VIDEO_FILE_PREFIX = "video_features_basic"
# KuaiRand's side tables: never logs. Only the basic video features are read.
SIDE_FILE_PREFIXES = ("video_features", "user_features")


@dataclass(frozen=True)
class KuaiRandInputs:
    """The files an import reads."""

    logs: list[Path]
    videos: Path | None


def find_inputs(src: str | os.PathLike) -> KuaiRandInputs:
    """Log files and the optional video features file under ``src`` (see the module docstring
    for which files are which)."""
    src = Path(src)
    if not src.exists():
        raise NotFoundError(f"{src} does not exist", where=str(src))
    if src.is_file():  # one log file; its video file, if any, lies next to it
        if _is_side_file(src):
            raise UsageError(f"{src.name} is a KuaiRand side file, not a log", where=str(src),
                             hint="give a log file, or the folder that holds the logs")
        logs = [src]
        videos = sorted(p for p in src.parent.iterdir()
                        if p.is_file() and _is_table_file(p, src.parent) and _is_video_file(p))
    else:
        files = sorted(p for p in src.rglob("*") if p.is_file() and _is_table_file(p, src))
        logs = [p for p in files if not _is_side_file(p)]
        videos = [p for p in files if _is_video_file(p)]
    if not logs:
        raise NotFoundError("no KuaiRand log files (*.csv, *.tsv or *.parquet other than the "
                            "video_features*/user_features* side files)", where=str(src))
    if len(videos) > 1:
        raise DataError(f"several video feature files: {', '.join(map(str, videos))}",
                        where=str(src), hint=f"keep one {VIDEO_FILE_PREFIX}* file in SRC")
    return KuaiRandInputs(logs, videos[0] if videos else None)


def _is_table_file(path: Path, folder: Path) -> bool:
    """A log or side file found in ``folder``: a table suffix, and hidden at no level (macOS
    leaves ``._log.csv`` copies in archives it packs)."""
    hidden = any(part.startswith(".") for part in path.relative_to(folder).parts)
    return not hidden and path.suffix.lower() in TABLE_SUFFIXES


def _is_side_file(path: Path) -> bool:
    return path.name.lower().startswith(SIDE_FILE_PREFIXES)


def _is_video_file(path: Path) -> bool:
    return path.name.lower().startswith(VIDEO_FILE_PREFIX)


class _Rows:
    """Columns of one input file as NumPy arrays, and how to name a row in an error."""

    def __init__(self, path: Path, columns: dict[str, np.ndarray | pa.Array], locate):
        self.path = path
        self.columns = columns
        self._locate = locate

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def fail(self, row: int, message: str) -> DataError:
        return DataError(message, where=self._locate(row))


def _read_table_file(path: Path, required: dict[str, pa.DataType],
                     optional: dict[str, pa.DataType], delimiter: str | None = None) -> _Rows:
    """Read ``required`` and whichever ``optional`` columns ``path`` (text or Parquet) has; a
    text file's delimiter is ``delimiter``, or sniffed when that is ``None``."""
    if path.suffix.lower() == ".parquet":
        return _read_parquet(path, required, optional)
    fmt = (TextFormat(delimiter) if delimiter is not None
           else sniff_format(path, TextFormat(), [*required, *optional]))
    present = set(header_names(path, fmt))
    columns = {**required, **{c: t for c, t in optional.items() if c in present}}
    text = read_text_columns(path, fmt, columns,
                             nullable=[c for c in optional if c in present])
    arrays = {name: _numpy_or_arrow(text.table.column(name)) for name in columns}
    return _Rows(path, arrays, text.where)


def _read_parquet(path: Path, required: dict[str, pa.DataType],
                  optional: dict[str, pa.DataType]) -> _Rows:
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"cannot read Parquet file: {exc}", where=str(path)) from None
    require_columns(required, schema.names, where=str(path))
    columns = {**required, **{c: t for c, t in optional.items() if c in schema.names}}
    try:
        table = pq.read_table(path, columns=list(columns), page_checksum_verification=True)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"cannot read Parquet file: {exc}", where=str(path)) from None
    arrays = {}
    for name, typ in columns.items():
        values = table.column(name)
        if name in required and values.null_count:
            row = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
            raise DataError(f"column {name!r} is null", where=f"{path}: row {row}")
        try:
            values = values.cast(typ)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise DataError(f"column {name!r} has type {values.type}, expected {typ}: "
                            f"{str(exc).splitlines()[0]}", where=str(path)) from None
        arrays[name] = _numpy_or_arrow(values)
    return _Rows(path, arrays, lambda row: f"{path}: row {row}")


def _numpy_or_arrow(values: pa.ChunkedArray):
    """NumPy for complete numeric columns; Arrow (which keeps nulls) for strings and for the
    optional columns that have empty values."""
    if (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)
            or values.null_count):
        return values.combine_chunks()
    return values.to_numpy()


def _check_log(rows: _Rows) -> None:
    c = rows.columns
    for flag in FLAG_COLUMNS:
        bad = np.flatnonzero((c[flag] != 0) & (c[flag] != 1))
        if bad.size:
            i = int(bad[0])
            raise rows.fail(i, f"column {flag!r}: {c[flag][i]} is not 0 or 1")
    for column in ("play_time_ms", "duration_ms"):
        bad = np.flatnonzero(c[column] < 0)
        if bad.size:
            i = int(bad[0])
            raise rows.fail(i, f"column {column!r}: negative duration {c[column][i]}")
    bad = np.flatnonzero((c["time_ms"] < TS_MIN_MS) | (c["time_ms"] >= TS_MAX_MS))
    if bad.size:
        i = int(bad[0])
        raise rows.fail(i, f"column 'time_ms': {c['time_ms'][i]} is not a time in ms between "
                           "2000 and 2100")
    bad = np.flatnonzero((c["tab"] < 0) | (c["tab"] > MAX_TAB))
    if bad.size:
        i = int(bad[0])
        raise rows.fail(i, f"column 'tab': {c['tab'][i]} is outside 0..{MAX_TAB}")


def first_tag_ids(tags: pa.Array) -> np.ndarray:
    """Topic ids from KuaiRand tag strings (``"39"``, ``"20,43"``): the first tag as an
    integer, 0 for a missing, empty or non-numeric tag (``"unknown"``)."""
    encoded = pc.dictionary_encode(tags)  # parse each distinct string once
    if len(encoded.dictionary) == 0:
        return np.zeros(len(tags), dtype=np.int64)
    words = pc.utf8_trim_whitespace(pc.list_element(pc.split_pattern(encoded.dictionary, ","), 0))
    numeric = pc.fill_null(pc.match_substring_regex(words, r"^[0-9]{1,18}$"), False)
    parsed = pc.cast(pc.if_else(numeric, words, "0"), pa.int64()).to_numpy(zero_copy_only=False)
    valid = encoded.indices.is_valid().to_numpy(zero_copy_only=False)
    indices = pc.fill_null(encoded.indices, 0).to_numpy(zero_copy_only=False)
    return np.where(valid, parsed[indices], 0)


@dataclass(frozen=True)
class _Videos:
    path: Path
    ids: np.ndarray  # sorted
    author_id: np.ndarray
    topic_id: np.ndarray
    media_type: np.ndarray  # codes into MEDIA_TYPES

    def positions(self, rows: _Rows) -> np.ndarray:
        video = rows.columns["video_id"]
        at, i = side_table_positions(self.ids, video)
        if i is not None:
            raise rows.fail(i, f"video_id {video[i]} is not in {self.path}")
        return at


def _read_videos(path: Path) -> _Videos:
    rows = _read_table_file(path, VIDEO_COLUMNS, OPTIONAL_VIDEO_COLUMNS)
    c = rows.columns
    order = np.argsort(c["video_id"], kind="stable")
    ids = c["video_id"][order]
    dup = np.flatnonzero(ids[1:] == ids[:-1])
    if dup.size:
        raise rows.fail(int(order[dup[0] + 1]), f"video_id {ids[dup[0]]} appears twice")
    n = ids.size
    topic = first_tag_ids(c["tag"]) if "tag" in c else np.zeros(n, dtype=np.int64)
    if "video_type" in c:
        is_ad = pc.fill_null(pc.equal(pc.utf8_upper(c["video_type"]), "AD"), False)
        media = is_ad.to_numpy(zero_copy_only=False).astype(np.int8)
    else:
        media = np.zeros(n, dtype=np.int8)
    return _Videos(path, ids, c["author_id"][order], topic[order], media[order])


def _map_log(rows: _Rows, videos: _Videos | None) -> tuple[dict[str, np.ndarray], int]:
    """One log file -> impression columns (one entry per row), and how many rows got
    :data:`UNKNOWN_AUTHOR` because neither the row nor a video file names their author.

    An item column comes from the row where it has a value, else from the video file.
    """
    _check_log(rows)
    c = rows.columns
    n = len(rows)
    at = videos.positions(rows) if videos is not None else None
    author = (videos.author_id[at] if at is not None
              else np.full(n, UNKNOWN_AUTHOR, dtype=np.int64))
    own_author = 0
    if isinstance(c.get("author_id"), np.ndarray):
        author, own_author = c["author_id"], n
    elif "author_id" in c:  # a column with empty values
        has = c["author_id"].is_valid().to_numpy(zero_copy_only=False)
        row_author = pc.fill_null(c["author_id"], UNKNOWN_AUTHOR).to_numpy(zero_copy_only=False)
        author, own_author = np.where(has, row_author, author), int(has.sum())
    topic = videos.topic_id[at] if at is not None else np.zeros(n, dtype=np.int64)
    if "tag" in c:
        has = c["tag"].is_valid().to_numpy(zero_copy_only=False)
        topic = np.where(has, first_tag_ids(c["tag"]), topic)
    media = videos.media_type[at] if at is not None else np.zeros(n, dtype=np.int8)
    mapped = {name: c[name] for name in LOG_COLUMNS}
    mapped.update(author_id=author, topic_id=topic, media_type=media)
    return mapped, 0 if at is not None else n - own_author


def import_kuairand(src: str | os.PathLike, out: str | os.PathLike, *,
                    overwrite: bool = False, delimiter: str | None = None) -> ImportSummary:
    """Import the KuaiRand logs under ``src`` into the data folder ``out``.

    ``delimiter`` forces the delimiter of text logs (see :func:`parse_delimiter`); by default
    each file's is sniffed. The video file's is always sniffed.
    """
    forced = parse_delimiter(delimiter) if delimiter is not None else None
    inputs = find_inputs(src)
    videos = _read_videos(inputs.videos) if inputs.videos is not None else None
    parts, notes = [], []
    with progress("reading KuaiRand logs", total=len(inputs.logs)) as advance:
        for path in inputs.logs:
            rows = _read_table_file(path, LOG_COLUMNS, OPTIONAL_LOG_COLUMNS, forced)
            mapped, unknown = _map_log(rows, videos)
            parts.append(mapped)
            if unknown:
                lacks = ("no author_id column" if "author_id" not in rows.columns
                         else "an empty author_id")
                notes.append(f"{path}: {unknown:,} of {len(rows):,} rows have {lacks} and there "
                             f"is no {VIDEO_FILE_PREFIX}* file to look it up in: their author_id "
                             f"is {UNKNOWN_AUTHOR} (unknown)")
            advance(1)
    impressions = parts[0] if len(parts) == 1 else {
        k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    log = to_uniti(impressions)
    log.notes.extend(notes)
    return write_data_folder(log, out, overwrite=overwrite)


def to_uniti(imp: dict[str, np.ndarray]) -> ImportedLog:
    """Impression columns (log columns plus author_id, topic_id, media_type codes) -> UniTi."""
    n = imp["user_id"].size
    duration_s = imp["duration_ms"].astype(np.float32) / np.float32(1000)
    play_s = imp["play_time_ms"].astype(np.float32) / np.float32(1000)
    item = {k: imp[k] for k in ("author_id", "topic_id", "media_type")}

    # Implicit events first, then explicit ones action by action: the stable sort by
    # (user, ts) then keeps each impression ahead of the actions taken on it.
    blocks = [dict(rows=np.arange(n), timeline=IMPLICIT, action=-1, dwell=play_s)]
    for code, flag in enumerate(ACTION_FLAGS):
        hit = np.flatnonzero(imp[flag] == 1)
        blocks.append(dict(rows=hit, timeline=EXPLICIT, action=code,
                           dwell=np.full(hit.size, np.nan, dtype=np.float32)))
    rows = np.concatenate([b["rows"] for b in blocks])
    events = {
        "user_id": imp["user_id"][rows],
        "ts": imp["time_ms"][rows],
        "timeline": np.concatenate([np.full(b["rows"].size, b["timeline"], np.int8)
                                    for b in blocks]),
        "media_id": imp["video_id"][rows],
        "author_id": item["author_id"][rows],
        "topic_id": item["topic_id"][rows],
        "media_type": item["media_type"][rows],
        "surface": imp["tab"][rows],
        "action": np.concatenate([np.full(b["rows"].size, b["action"], np.int8) for b in blocks]),
        "video_duration": duration_s[rows],
        "dwell_time": np.concatenate([b["dwell"] for b in blocks]),
    }

    complete = (imp["duration_ms"] > 0) & (imp["play_time_ms"] >= imp["duration_ms"])
    skip = ~complete & (imp["play_time_ms"] < SKIP_BELOW_MS)
    labels = {
        "like": imp["is_like"], "comment": imp["is_comment"], "share": imp["is_forward"],
        "follow": imp["is_follow"], "profile_visit": imp["is_profile_enter"],
        "dislike": imp["is_hate"], "click": imp["is_click"], "long_view": imp["long_view"],
        "complete": complete, "skip": skip, "watch_time": play_s,
    }
    examples = {
        "user_id": imp["user_id"],
        "request_ts": imp["time_ms"],
        "media_id": imp["video_id"],
        **item,
        "surface": imp["tab"],
        dense_column("video_duration"): duration_s,
        dense_column("is_rand"): imp["is_rand"].astype(np.float32),
        **{label_column(task): np.asarray(values) for task, values in labels.items()},
    }
    max_tab = int(imp["tab"].max()) if n else -1
    vocab = {
        "media_type": list(MEDIA_TYPES),
        "surface": [f"tab_{t}" for t in range(max_tab + 1)],
        "action": list(ACTIONS),
    }
    return ImportedLog(source=SOURCE, vocab=vocab, events=events, examples=examples,
                       tasks=dict(TASKS), dense=list(DENSE))
