"""The UniTi data model: Arrow schemas of the events and examples datasets.

Both datasets are Parquet folders (one or more ``*.parquet`` files, Hive-style partitions
allowed). Conventions, chosen once for the whole project:

* Time is UTC with **millisecond** precision: ``timestamp[ms, tz=UTC]`` in Parquet, ``int64``
  milliseconds since the Unix epoch everywhere inside dv365 (stores, kernels, specs).
* Durations (``video_duration``, ``dwell_time``) are **seconds** as ``float32``.
* Enumerated columns (``timeline``, ``media_type``, ``surface``, ``action``) are strings
  (plain or dictionary-encoded). Their vocabularies are *open*: each dataset declares its own
  in the Parquet schema metadata under the key ``dv365`` (see :class:`DatasetMeta`), and a
  value that is not declared is an error. Only ``timeline`` has a fixed vocabulary, because the
  model distinguishes the two timelines of the paper.
* Inside dv365 an enumerated value is its index in the declared vocabulary (``int8``), with
  ``-1`` for null; floats use NaN for null.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

METADATA_KEY = b"dv365"
FORMAT_VERSION = 1

TS_TYPE = pa.timestamp("ms", tz="UTC")
TIMELINES = ("explicit", "implicit")
EXPLICIT, IMPLICIT = 0, 1
NULL_CODE = -1

# Sane range for event and request times: 1990-01-01 .. 2100-01-01 (ms since epoch); real logs
# such as MovieLens start in 1995. Anything outside is almost surely a unit mistake (seconds or
# microseconds read as milliseconds).
TS_MIN_MS = 631_152_000_000
TS_MAX_MS = 4_102_444_800_000
# The range as every message says it.
TS_RANGE_TEXT = "1990-01-01..2100-01-01 UTC (end excluded)"

FieldKind = Literal["id", "enum", "time", "seconds", "number", "binary"]


@dataclass(frozen=True)
class FieldSpec:
    """One column of a dataset: its Arrow type, meaning and null rule."""

    name: str
    kind: FieldKind
    arrow_type: pa.DataType
    nullable: bool
    doc: str


def _enum(name: str, nullable: bool, doc: str) -> FieldSpec:
    return FieldSpec(name, "enum", pa.dictionary(pa.int32(), pa.string()), nullable, doc)


EVENT_FIELDS: dict[str, FieldSpec] = {
    f.name: f
    for f in (
        FieldSpec("user_id", "id", pa.int64(), False, "The user whose timeline holds the event."),
        FieldSpec("ts", "time", TS_TYPE, False, "Event time, UTC, milliseconds."),
        _enum("timeline", False, "explicit (actions) or implicit (impressions with dwell time)."),
        FieldSpec("media_id", "id", pa.int64(), False, "The media item."),
        FieldSpec("author_id", "id", pa.int64(), False, "The media item's author."),
        FieldSpec("topic_id", "id", pa.int64(), False, "The media item's topic."),
        _enum("media_type", False, "video, photo, carousel, ... (declared vocabulary)."),
        _enum("surface", False, "reels, feed, stories, explore, ... (declared vocabulary)."),
        _enum("action", True, "like, share, ... on explicit rows; null on implicit rows."),
        FieldSpec("video_duration", "seconds", pa.float32(), True, "Seconds; null for photos."),
        FieldSpec("dwell_time", "seconds", pa.float32(), True,
                  "Seconds the user watched; required on implicit rows."),
    )
}

# Inside dv365 (the timeline store, the kernels, the reference): each event column as one
# NumPy array of this dtype; enums are int8 codes (-1 null), durations float32 (NaN null).
EVENT_COLUMN_DTYPES: dict[str, np.dtype] = {
    "ts": np.dtype(np.int64),
    "timeline": np.dtype(np.int8),
    "media_id": np.dtype(np.int64),
    "author_id": np.dtype(np.int64),
    "topic_id": np.dtype(np.int64),
    "media_type": np.dtype(np.int8),
    "surface": np.dtype(np.int8),
    "action": np.dtype(np.int8),
    "video_duration": np.dtype(np.float32),
    "dwell_time": np.dtype(np.float32),
}

ID_COLUMNS = ("media_id", "author_id", "topic_id")
ENUM_COLUMNS = ("timeline", "media_type", "surface", "action")
VOCAB_COLUMNS = ("media_type", "surface", "action")

# The vocabulary the generator writes and that slice specs are checked against when no data
# set is given. Any dataset may declare its own (importers do).
DEFAULT_VOCAB: dict[str, list[str]] = {
    "media_type": ["video", "photo", "carousel"],
    "surface": ["reels", "feed", "stories", "explore"],
    "action": ["like", "share", "comment", "save", "follow", "profile_visit", "hide", "report"],
}

# Tasks of the backbone and downstream models (the paper's list). A dataset may declare fewer
# or more; these are what the generator and the importers write.
DEFAULT_BINARY_TASKS = ("like", "comment", "share", "save", "follow", "complete", "skip",
                        "profile_visit")
DEFAULT_REGRESSION_TASKS = ("watch_time",)
LABEL_PREFIX = "label_"
DENSE_PREFIX = "dense_"

EXAMPLE_FIELDS: dict[str, FieldSpec] = {
    f.name: f
    for f in (
        FieldSpec("user_id", "id", pa.int64(), False, "The user the item was shown to."),
        FieldSpec("request_ts", "time", TS_TYPE, False,
                  "Request time, UTC, milliseconds; the model sees history before it."),
        FieldSpec("media_id", "id", pa.int64(), False, "Target item."),
        FieldSpec("author_id", "id", pa.int64(), False, "Target item's author."),
        FieldSpec("topic_id", "id", pa.int64(), False, "Target item's topic."),
        _enum("media_type", False, "Target item's media type."),
        _enum("surface", False, "Surface of the request."),
    )
}


class DatasetMeta(BaseModel):
    """What a dataset declares about itself, stored as JSON in the Parquet schema metadata.

    ``vocab`` maps each enumerated column (``media_type``, ``surface``, ``action``) to its
    ordered list of allowed values; the order defines the integer codes used inside dv365.
    For examples datasets, ``tasks`` maps each task name to its kind (label column
    ``label_<task>``) and ``dense`` lists the dense feature columns (``dense_<name>``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["dv365"] = "dv365"
    version: int = FORMAT_VERSION
    kind: Literal["events", "examples"]
    vocab: dict[str, list[str]] = Field(default_factory=dict)
    tasks: dict[str, Literal["binary", "regression"]] = Field(default_factory=dict)
    dense: list[str] = Field(default_factory=list)
    source: str = ""

    @field_validator("version")
    @classmethod
    def _version_is_readable(cls, version: int) -> int:
        if version > FORMAT_VERSION:
            raise ValueError(f"version {version} is newer than this dv365 reads (version "
                             f"{FORMAT_VERSION}); upgrade dv365 to read this dataset")
        if version < 1:
            raise ValueError(f"version {version} is not a dv365 metadata version (this dv365 "
                             f"reads version {FORMAT_VERSION})")
        return version

    @field_validator("dense")
    @classmethod
    def _dense_is_unique(cls, dense: list[str]) -> list[str]:
        seen: set[str] = set()
        for name in dense:
            if name in seen:
                raise ValueError(f"dense feature {name!r} is listed more than once")
            seen.add(name)
        return dense

    @field_validator("vocab")
    @classmethod
    def _vocab_is_declared_and_unique(cls, vocab: dict[str, list[str]]) -> dict[str, list[str]]:
        for column, values in vocab.items():
            if column not in VOCAB_COLUMNS:
                raise ValueError(f"vocab for unknown column {column!r}; expected one of "
                                 f"{', '.join(VOCAB_COLUMNS)}")
            if len(set(values)) != len(values):
                raise ValueError(f"vocab {column!r} repeats a value")
            if len(values) > 127:
                raise ValueError(f"vocab {column!r} has {len(values)} values; at most 127")
        return vocab

    def codes(self, column: str) -> dict[str, int]:
        """Value -> integer code for an enumerated column."""
        values = TIMELINES if column == "timeline" else self.vocab.get(column, [])
        return {v: i for i, v in enumerate(values)}

    def values(self, column: str) -> tuple[str, ...]:
        """The declared vocabulary of an enumerated column, in code order."""
        return TIMELINES if column == "timeline" else tuple(self.vocab.get(column, ()))

    def to_metadata(self) -> dict[bytes, bytes]:
        return {METADATA_KEY: self.model_dump_json().encode()}

    @classmethod
    def from_schema(cls, schema: pa.Schema) -> "DatasetMeta | None":
        raw = (schema.metadata or {}).get(METADATA_KEY)
        if raw is None:
            return None
        return cls.model_validate(json.loads(raw))


def events_schema(meta: DatasetMeta) -> pa.Schema:
    """The Arrow schema that events files are written with."""
    fields = [pa.field(f.name, f.arrow_type, nullable=f.nullable) for f in EVENT_FIELDS.values()]
    return pa.schema(fields, metadata=meta.to_metadata())


def label_column(task: str) -> str:
    return LABEL_PREFIX + task


def dense_column(name: str) -> str:
    return DENSE_PREFIX + name


def examples_schema(meta: DatasetMeta) -> pa.Schema:
    """The Arrow schema that examples files are written with (labels and dense from ``meta``)."""
    fields = [pa.field(f.name, f.arrow_type, nullable=f.nullable) for f in EXAMPLE_FIELDS.values()]
    fields += [pa.field(dense_column(d), pa.float32(), nullable=False) for d in meta.dense]
    for task, kind in meta.tasks.items():
        typ = pa.int8() if kind == "binary" else pa.float32()
        fields.append(pa.field(label_column(task), typ, nullable=False))
    return pa.schema(fields, metadata=meta.to_metadata())
