"""The configuration of ``dv365 eval``: a YAML file validated into pydantic models.

Like the training config (:mod:`dv365.model.config`), every section forbids unknown keys,
every error is a :class:`~dv365.errors.ConfigError` at ``<file>: <key path>``, and relative
paths are relative to the file's folder. A minimal config::

    data: ../build/demo/data        # events/ and examples/
    out: ../build/demo/eval         # the run directory
    export_days: 14                 # T: 14 days before the end of the examples
    eval_days: 7                    # the held-out days at the end
    foundation:                     # a dv365 train config without data: and out:
      spec: ../slices/minimal.slice
      encoder: {type: fsa}
      epochs: 1

See docs/downstream.md for every key.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from dv365.downstream.hstu_options import MAX_HISTORY, HstuOptions
from dv365.errors import ConfigError
from dv365.model.backbones.options import DLRMOptions
from dv365.model.config import (
    DEVICE_PATTERN,
    MAX_VALIDATION_DAYS,
    ItemTables,
    Optimizers,
    PluginSection,
    Real,
    Seed,
    config_path,
    plugin_options,
    read_config_file,
    utc_moment,
    validated,
)
from dv365.plugins import Plugins, get_plugins

Family = Literal["ranking", "retrieval"]
CONTROL = "control"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class FoundationSection(_Strict):
    """The foundation model: an existing checkpoint trained on examples before T
    (``checkpoint``), or a training config (``train``: every key of ``dv365 train``'s config
    but ``data`` and ``out``, which eval sets) that eval trains on the examples before T."""

    checkpoint: Path | None = None
    train: dict[str, Any] | None = None
    validation_days: int = Field(default=2, ge=1, le=MAX_VALIDATION_DAYS,
                                 description="the foundation's own held-out days before T")

    @model_validator(mode="after")
    def _one(self) -> "FoundationSection":
        if (self.checkpoint is None) == (self.train is None):
            raise ValueError("give foundation.checkpoint or foundation.train, one of them")
        if self.train is not None:
            for key in ("data", "out"):
                if key in self.train:
                    raise ValueError(f"foundation.train sets no {key}: eval sets it")
        return self


class DownstreamSection(_Strict):
    """What every downstream model shares: the recent events it reads, the HSTU over them,
    the id tables, the optimizer and the schedule."""

    recent: int = Field(default=500, ge=1, le=MAX_HISTORY,
                        description="K: the most recent events before the request")
    hstu: HstuOptions = HstuOptions(dim=32, layers=2)
    item_tables: ItemTables = ItemTables()
    item_features: tuple[Literal["media_id", "author_id", "topic_id", "media_type",
                                 "surface"], ...] = (
        "author_id", "topic_id", "media_type", "surface")
    dlrm: DLRMOptions = DLRMOptions(dense_layers=(32,), over_layers=(64, 32))
    optimizer: Optimizers = Optimizers()
    batch_size: int = Field(default=256, gt=0)
    epochs: int = Field(default=1, gt=0)
    max_train_examples: int | None = Field(
        default=None, gt=0, description="train every model on this many of the training "
                                        "period's examples (one sample, the same for all)")
    alpha: Real = Field(default=1.0, ge=0, description="weight of the regression losses")
    device: str = Field(default="cpu", pattern=DEVICE_PATTERN)
    threads: int | None = Field(default=None, gt=0)


class RankingSection(_Strict):
    """The ranking comparison: the control (HSTU + DLRM) and one treatment per adapter."""

    adapters: tuple[PluginSection, ...] = (PluginSection(type="linear"),
                                           PluginSection(type="hstu_prepend"))
    tasks: tuple[str, ...] | None = Field(default=None, description="default: all")


class RetrievalSection(_Strict):
    """The retrieval comparison: the two-tower control and one treatment per adapter."""

    adapters: tuple[PluginSection, ...] = (PluginSection(type="linear"),
                                           PluginSection(type="gatenet"))
    tasks: tuple[str, ...] | None = Field(
        default=None, description="binary tasks whose positives are retrieved (default: "
                                  "every binary task but skip)")
    temperature: Real = Field(default=0.05, gt=0)
    hidden: tuple[Annotated[int, Field(gt=0, le=1 << 16)], ...] = (128,)
    ks: tuple[Annotated[int, Field(gt=0, le=1 << 20)], ...] = Field(default=(1, 10),
                                                                    min_length=1)


class EvalConfig(_Strict):
    """Everything ``dv365 eval`` needs (see the module docstring)."""

    data: Path
    out: Path
    seeds: tuple[Seed, ...] = Field(default=(0, 1, 2), min_length=1)
    export_at: datetime | None = Field(default=None, description="T, the export time")
    export_days: int | None = Field(
        default=None, ge=1, le=MAX_VALIDATION_DAYS,
        description="T = the UTC midnight N days before the day after the last example")
    eval_days: int = Field(default=7, ge=1, le=MAX_VALIDATION_DAYS,
                           description="the held-out days at the end")
    foundation: FoundationSection
    store: str | None = Field(default=None, description="default: lmdb://<out>/store")
    codec: str = "int4"
    downstream: DownstreamSection = DownstreamSection()
    ranking: RankingSection | None = RankingSection()
    retrieval: RetrievalSection | None = RetrievalSection()
    bootstrap_replicates: int = Field(default=1000, ge=100)
    experiments: tuple[PluginSection, ...] = Field(
        default=(), description="experiment kinds to run besides the main comparison")

    @field_validator("export_at", mode="before")
    @classmethod
    def _utc(cls, value: Any) -> Any:
        return utc_moment(value)

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if len(set(value)) != len(value):
            raise ValueError("a seed repeats")
        return value

    @model_validator(mode="after")
    def _checks(self) -> "EvalConfig":
        if (self.export_at is None) == (self.export_days is None):
            raise ValueError("give export_at or export_days, one of them")
        if self.ranking is None and self.retrieval is None:
            raise ValueError("nothing to compare: ranking and retrieval are both off")
        return self

    _file: str | None = PrivateAttr(default=None)

    @property
    def store_uri(self) -> str:
        return self.store or f"lmdb://{self.out / 'store'}"

    def where(self, key: str) -> str:
        return f"{self._file}: {key}" if self._file else key

    def experiment_sections(self, plugins: Plugins | None = None
                            ) -> list[tuple[str, PluginSection, Any]]:
        """``(name, section, validated options)`` of every experiment; a name is the kind
        (numbered when one kind repeats)."""
        plugins = plugins or get_plugins()
        out, seen = [], {}
        for i, section in enumerate(self.experiments):
            seen[section.type] = seen.get(section.type, 0) + 1
            name = section.type if seen[section.type] == 1 else \
                f"{section.type}-{seen[section.type]}"
            options = plugin_options(plugins, "experiment", section, f"experiments.{i}",
                                     self._file)
            out.append((name, section, options))
        return out

    def variants(self, family: Family) -> list[tuple[str, PluginSection | None]]:
        """``(name, adapter section)`` of the family's models, the control first; a name is
        the adapter's type (numbered when one type repeats)."""
        section = self.ranking if family == "ranking" else self.retrieval
        if section is None:
            return []
        out: list[tuple[str, PluginSection | None]] = [(CONTROL, None)]
        seen: dict[str, int] = {}
        for adapter in section.adapters:
            seen[adapter.type] = seen.get(adapter.type, 0) + 1
            name = adapter.type if seen[adapter.type] == 1 else \
                f"{adapter.type}-{seen[adapter.type]}"
            out.append((name, adapter))
        return out


def _resolve_paths(raw: dict, base: Path) -> dict:
    def fix(value: Any) -> Any:
        return config_path(value, base)

    raw = dict(raw)
    for key in ("data", "out"):
        if isinstance(raw.get(key), (str, Path)):
            raw[key] = fix(raw[key])
    foundation = raw.get("foundation")
    if isinstance(foundation, dict):
        foundation = dict(foundation)
        if isinstance(foundation.get("checkpoint"), (str, Path)):
            foundation["checkpoint"] = fix(foundation["checkpoint"])
        train = foundation.get("train")
        if isinstance(train, dict) and isinstance(train.get("spec"), (str, Path)):
            foundation["train"] = {**train, "spec": fix(train["spec"])}
        raw["foundation"] = foundation
    store = raw.get("store")
    if isinstance(store, str) and store.startswith("lmdb://"):
        path = Path(store[len("lmdb://"):])
        raw["store"] = "lmdb://" + (str(path) if path.is_absolute() else fix(path))
    return raw


def parse_eval_config(raw: Any, *, file: str | None = None, base: Path | None = None,
                      plugins: Plugins | None = None) -> EvalConfig:
    """Validate an eval config mapping (adapter options included by their plugins)."""
    if not isinstance(raw, dict):
        raise ConfigError("an eval config is a mapping of keys to values",
                          where=file or "(config)")
    if base is not None:
        raw = _resolve_paths(raw, base)
    config = validated(EvalConfig, raw, file)
    plugins = plugins or get_plugins()
    for family in ("ranking", "retrieval"):
        section = getattr(config, family)
        for i, adapter in enumerate(section.adapters if section else ()):
            plugin_options(plugins, "adapter", adapter, f"{family}.adapters.{i}", file)
    config._file = file
    config.experiment_sections(plugins)  # every kind and its options, checked now
    return config


def load_eval_config(path: str | Path, *, plugins: Plugins | None = None) -> EvalConfig:
    """Read and validate a YAML eval config."""
    raw, shown, base = read_config_file(path)
    return parse_eval_config(raw, file=shown, base=base, plugins=plugins)
