"""The pipeline's YAML config (docs/pipeline.md): where the data lands and lives, how the
foundation model is trained and how often, where snapshots go and how many stay.

Read like the training config (:func:`dv365.model.config.read_config_file`: size and alias
limits, no duplicate keys, paths relative to the file) and validated as strictly: unknown
keys are refused and every error is one line at ``file: key``.
"""

from __future__ import annotations

import functools

from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dv365.errors import ConfigError, Dv365Error
from dv365.model.config import (
    DEVICE_PATTERN,
    MAX_VALIDATION_DAYS,
    TrainConfig,
    check_folders,
    config_path,
    load_config,
    parse_config,
    read_config_file,
    validated,
)
from dv365.plugins import Plugins
from dv365.stores.uri import FILE_SCHEMES, parse_store_uri

STATE_FILE = "pipeline.sqlite"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class RetrainPolicy(_Strict):
    """When the foundation model is trained again (fine-tuned from its newest checkpoint):
    every N completed cycles, or every N days; exactly one."""

    every_cycles: Optional[int] = Field(default=None, ge=1, le=1_000_000)
    every_days: Optional[float] = Field(default=None, gt=0, le=MAX_VALIDATION_DAYS)

    @model_validator(mode="after")
    def _one(self) -> "RetrainPolicy":
        given = [k for k in ("every_cycles", "every_days") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of every_cycles and every_days")
        return self


class ExportOptions(_Strict):
    """How the export step runs ``export_snapshot`` (the options of ``dv365 export``)."""

    device: str = Field(default="cpu", pattern=DEVICE_PATTERN)
    batch_size: int = Field(default=256, ge=1, le=1 << 20)
    shard_size: int = Field(default=65_536, ge=1, le=1 << 30)
    ray: Optional[str] = Field(default=None, description="compute the shards on Ray: local, "
                                                         "auto or a cluster address")
    workers: int = Field(default=1, ge=1, le=1 << 16)
    devices: Optional[tuple[str, ...]] = Field(
        default=None, description="one worker process per device of this host")
    gpus_per_worker: Optional[float] = Field(default=None, ge=0)
    cpus_per_worker: float = Field(default=1.0, ge=0)
    retries: int = Field(default=2, ge=0, le=100)

    def identity(self) -> dict[str, Any]:
        """What decides the exported bytes (the workers do not: any executor writes the
        same records), for the export step's inputs hash."""
        return {"device": self.device, "batch_size": self.batch_size,
                "shard_size": self.shard_size}

    def job_options(self, store_uri: str, where: str | None = None) -> dict[str, Any]:
        """Keywords of :func:`dv365.export.job.export_snapshot` (its workers, when these
        options ask for some, open ``store_uri`` themselves)."""
        from dv365.export.executor_options import executor_for
        from dv365.stores import open_store

        executor = executor_for(
            ray=self.ray, workers=self.workers, devices=self.devices, device=self.device,
            gpus_per_worker=self.gpus_per_worker, cpus_per_worker=self.cpus_per_worker,
            where=lambda option: (f"{where}: " if where else "") +
            f"export.{option.replace('-', '_')}")
        options: dict[str, Any] = {"device": self.device, "batch_size": self.batch_size,
                                   "shard_size": self.shard_size, "retries": self.retries}
        if executor is not None:
            options.update(executor=executor,
                           open_sink=functools.partial(open_store, store_uri, where="store"))
        return options


class PipelineConfig(_Strict):
    """Everything one cycle needs (see docs/pipeline.md)."""

    data: Path = Field(description="the data folder the pipeline grows (events/, examples/)")
    landing: Optional[Path] = Field(default=None,
                                    description="where new batches arrive (DATA/incoming)")
    train: Any = Field(description="a dv365 train config file, or its keys inline")
    retrain: RetrainPolicy = RetrainPolicy(every_days=3)
    store: str = Field(description="the store URI snapshots are published to")
    codec: str = "int4"
    gc_keep: int = Field(default=3, ge=1, le=10_000)
    verify_sample: int = Field(default=32, ge=0, le=1_000_000)
    export: ExportOptions = ExportOptions()
    state_dir: Optional[Path] = Field(default=None,
                                      description="default: DATA's parent folder / pipeline")
    state: Optional[Path] = Field(default=None, description="default: STATE_DIR/pipeline.sqlite")
    cache_dir: Optional[Path] = Field(default=None, description="timeline store cache")

    _file: str | None = None
    _train: TrainConfig | None = None

    @property
    def landing_dir(self) -> Path:
        return self.landing if self.landing is not None else self.data / "incoming"

    @property
    def state_path(self) -> Path:
        if self.state is not None:
            return self.state
        folder = self.state_dir if self.state_dir is not None else self.data.parent / "pipeline"
        return folder / STATE_FILE

    @property
    def train_config(self) -> TrainConfig:
        """The training config, its data the pipeline's data folder (and cache)."""
        assert self._train is not None, "read with load_pipeline_config"
        return self._train

    def where(self, key: str) -> str:
        return f"{self._file}: {key}" if self._file else key


def load_pipeline_config(path: str | Path, *, plugins: Plugins | None = None
                         ) -> PipelineConfig:
    """Read and validate a pipeline config file (errors: one line at ``file: key``)."""
    raw, shown, base = read_config_file(path)
    if not isinstance(raw, dict):
        raise ConfigError("a pipeline config is a mapping of keys to values", where=shown)
    raw = dict(raw)
    for key in ("data", "landing", "state_dir", "state", "cache_dir"):
        if isinstance(raw.get(key), str):
            raw[key] = config_path(raw[key], base)
    if isinstance(raw.get("store"), str):
        raw["store"] = _store_uri(raw["store"], base, shown)
    config = validated(PipelineConfig, raw, shown)
    config._file = shown
    config._train = _train_config(config, config.train, shown, base, plugins)
    return config


def _store_uri(uri: str, base: Path, shown: str) -> str:
    """The URI with a file store's relative path taken relative to the config's folder."""
    where = f"{shown}: store"
    try:
        parsed = parse_store_uri(uri, where=where)
    except Dv365Error as exc:
        raise ConfigError(exc.message, where=where, hint=exc.hint) from None
    if parsed.scheme in FILE_SCHEMES:
        rest = uri.split("://", 1)[1]
        path, mark, query = rest.partition("?")
        if not Path(path).expanduser().is_absolute():
            return f"{parsed.scheme}://{config_path(path, base)}{mark}{query}"
    return uri


def _train_config(config: PipelineConfig, train: Any, shown: str, base: Path,
                  plugins: Plugins | None) -> TrainConfig:
    if isinstance(train, str):
        loaded = load_config(config_path(train, base), plugins=plugins)
    elif isinstance(train, dict):
        data = train.get("data") or {}
        data = {k: v for k, v in (data.items() if isinstance(data, dict) else ())
                if k not in ("path", "events", "examples")}
        raw = {**train, "data": {**data, "path": str(config.data)}}
        loaded = parse_config(raw, file=f"{shown}: train", base=base, plugins=plugins)
        check_folders(loaded)
    else:
        raise ConfigError("a dv365 train config file, or its keys inline",
                          where=config.where("train"))
    # The model trains on the data the pipeline grows, read through the pipeline's cache.
    data = loaded.data.model_copy(update={
        "path": config.data, "events": None, "examples": None,
        **({"cache_dir": config.cache_dir} if config.cache_dir is not None else {})})
    out = loaded.model_copy(update={"data": data})
    out._file = loaded._file
    return out
