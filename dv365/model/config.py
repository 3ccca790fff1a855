"""The training configuration: a YAML file validated into pydantic models.

Every section forbids unknown keys, and every error is a :class:`~dv365.errors.ConfigError`
whose ``where`` is ``<file>: <key path>`` (``train.yaml: encoder.blocsk``). The ``encoder:``
and ``backbone:`` sections are discriminated by their ``type``: the plugin registered under
that name supplies the options model the rest of the section is validated against, so an
outside plugin's options are checked as strictly as the built-ins'.

Relative paths in the file are relative to the file's folder (``..`` resolved, as
:func:`~dv365.paths.absolute_path` does; messages show them by
:func:`~dv365.paths.display_path`). A minimal config::

    data: ../data/small            # a data folder with events/ and examples/
    spec: ../slices/default.slice  # a slice spec (or a compiled IR .json)
    out: runs/fsa
    encoder: {type: fsa}
    backbone: {type: dlrm}
    steps: 2000

See docs/model.md for every key.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from datetime import date, datetime, timezone
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from dv365.durations import DAY_MS, HOUR_MS
from dv365.errors import ConfigError, NotFoundError
from dv365.paths import absolute_path, display_path
from dv365.plugins import Plugins, get_plugins
from dv365.slices.language import MAX_GAP_OR_WINDOW_MS


Model = TypeVar("Model", bound=BaseModel)

# Which examples share one history computation (dv365.model.examples.history_groups).
Grouping = Literal["user_day", "request"]
# The keys that choose the held-out split (exactly one; the fraction by default).
VALIDATION_KEYS = ("validation_from", "validation_fraction", "validation_days")
DEFAULT_VALIDATION_FRACTION = 0.1

# Limits on what a config file can make the loader and the run do (docs/model.md, "The config").
MAX_CONFIG_BYTES = 1 << 20
# Values in a config, aliases expanded: a few `a: &a [*b, *b, ...]` lines otherwise expand
# to billions of values once anything walks the document.
MAX_CONFIG_VALUES = 100_000
INT64_MAX = (1 << 63) - 1
FLOAT32_MAX = 3.4028234663852886e38  # the model computes in float32
MAX_THREADS = 1024
MAX_GAP_HOURS = MAX_GAP_OR_WINDOW_MS / HOUR_MS
MAX_VALIDATION_DAYS = MAX_GAP_OR_WINDOW_MS // DAY_MS

# Counts and seeds fit an int64 (NumPy's and torch's integers); reals are finite (every
# section forbids inf and nan) and fit a float32.
Count = Annotated[int, Field(gt=0, le=INT64_MAX)]
Seed = Annotated[int, Field(ge=0, le=INT64_MAX)]


def _float32(value: float) -> float:
    if abs(value) > FLOAT32_MAX:
        raise ValueError(f"must be at most {FLOAT32_MAX:.4g} in size: the model computes in "
                         "float32")
    return value


Real = Annotated[float, AfterValidator(_float32)]


def utc_moment(value: Any) -> Any:
    """A config's moment as an aware datetime: YAML reads ``2025-12-20`` as a date and
    ``2025-12-20 10:00`` as a naive time, both UTC; anything else is left to pydantic."""
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DataConfig(_Strict):
    """Where the events and examples are, and which examples are held out.

    The held-out split is the examples at or after one cut in time, chosen by exactly one of
    ``validation_from`` (a date), ``validation_fraction`` (the last share of the examples'
    time span) and ``validation_days`` (the last calendar days, the last example's day
    included); none given means ``validation_fraction: 0.1``.
    """

    path: Path | None = Field(default=None, description="data folder with events/, examples/")
    events: Path | None = None
    examples: Path | None = None
    validation_from: datetime | None = Field(
        default=None, description="examples at or after this time (UTC unless it says) are "
                                  "held out")
    validation_fraction: float | None = Field(
        default=None, gt=0, lt=1,
        description="the last fraction of the time span from the first to the last example")
    validation_days: int | None = Field(
        default=None, ge=1, le=MAX_VALIDATION_DAYS,
        description="the last N calendar (UTC) days, the last example's day included")
    until: datetime | None = Field(
        default=None, description="examples at or after this time (UTC unless it says) are "
                                  "not used at all: the period a foundation model trains on "
                                  "ends here (dv365 eval's export time)")
    max_eval_examples: Count | None = Field(default=None,
                                          description="cap on evaluated examples (the first)")
    cache_dir: Path | None = Field(default=None, description="timeline store cache")

    @field_validator("validation_from", "until", mode="before")
    @classmethod
    def _utc(cls, value: Any) -> Any:
        return utc_moment(value)

    @model_validator(mode="after")
    def _where(self) -> "DataConfig":
        if self.path is None and (self.events is None or self.examples is None):
            raise ValueError("give data.path (a data folder), or both data.events and "
                             "data.examples")
        chosen = [k for k in VALIDATION_KEYS if getattr(self, k) is not None]
        if len(chosen) > 1:
            raise ValueError(f"give one of {', '.join(VALIDATION_KEYS)}, not "
                             f"{' and '.join(chosen)}")
        if not chosen:  # frozen model: set while validating, so config.json says it
            object.__setattr__(self, "validation_fraction", DEFAULT_VALIDATION_FRACTION)
        return self

    @property
    def validation_key(self) -> str:
        """The one ``validation_*`` key that chooses the held-out split."""
        return next(k for k in VALIDATION_KEYS if getattr(self, k) is not None)

    @property
    def events_path(self) -> Path:
        return self.events if self.events is not None else self.path / "events"

    @property
    def examples_path(self) -> Path:
        return self.examples if self.examples is not None else self.path / "examples"


class PluginSection(BaseModel):
    """``type`` names a registered plugin; the other keys are its options."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class SparseOptimizer(_Strict):
    """For the embedding tables (sparse gradients)."""

    type: Literal["rowwise_adagrad", "adagrad", "sparse_adam"] = "rowwise_adagrad"
    lr: Real = Field(default=0.05, gt=0)
    eps: Real = Field(default=1e-8, gt=0)


class LearningRateSchedule(_Strict):
    """The dense learning rate over the run: a linear warm-up from ``lr / warmup_steps`` to
    ``lr``, then a decay to ``min_lr_ratio * lr`` at the last step (docs/model.md)."""

    warmup_steps: int = Field(default=0, ge=0, le=INT64_MAX, description="steps of linear warm-up")
    decay: Literal["cosine", "linear", "none"] = Field(
        default="cosine", description="the shape of the decay after the warm-up")
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1,
                                description="the last step's rate over the peak rate")


class DenseOptimizer(_Strict):
    """For everything else (encoder, backbone MLPs)."""

    type: Literal["adam", "adamw"] = "adam"
    lr: Real = Field(default=1e-3, gt=0)
    weight_decay: Real = Field(default=0.0, ge=0)
    schedule: LearningRateSchedule = LearningRateSchedule()


class Optimizers(_Strict):
    sparse: SparseOptimizer = SparseOptimizer()
    dense: DenseOptimizer = DenseOptimizer()


class ItemTables(_Strict):
    """Rows of the target item's id tables (ids are hashed into them)."""

    media_id: Count = 1 << 17
    author_id: Count = 1 << 15
    topic_id: Count = 1 << 12


class EarlyStopping(_Strict):
    """Stop when the held-out loss has not improved for ``patience`` evaluations."""

    patience: Count = Field(description="evaluations without a new best held-out loss")


# How one slice table is spread over the ranks of a run on several devices (torchrec's
# sharding types; docs/model.md, "Several devices").
ShardingType = Literal["table_wise", "column_wise", "row_wise", "data_parallel"]
DEVICE_PATTERN = r"^(cpu|cuda(:\d+)?)$"


class Sharding(_Strict):
    """How the slice tables are sharded when training on several devices: ``plan: auto``
    lets torchrec's planner choose; a mapping ``{table: table_wise | column_wise | row_wise |
    data_parallel}`` fixes the named tables (the planner places the rest)."""

    plan: Literal["auto"] | dict[str, ShardingType] = Field(
        default="auto", description="auto (torchrec's planner), or a sharding type per table")


class TrainConfig(_Strict):
    """Everything ``dv365 train`` needs (see the module docstring)."""

    data: DataConfig
    spec: Path
    out: Path
    gap_hours: float | None = Field(default=None, ge=0, le=MAX_GAP_HOURS,
                                    description="override the spec's gap (0 allowed)")
    grouping: Grouping = Field(
        default="user_day", description="one history per user and UTC day, at its earliest "
                                        "request (fast), or per request (exact cutoffs)")
    encoder: PluginSection | None = Field(
        default=None, description="null trains the backbone without the user tower")
    backbone: PluginSection = PluginSection(type="dlrm")
    tasks: tuple[str, ...] | None = Field(default=None,
                                          description="default: every task of the examples")
    alpha: Real = Field(default=1.0, ge=0, description="weight of the regression losses")
    log1p_regression: bool = Field(default=True,
                                   description="model regression labels on log1p scale")
    item_features: tuple[Literal["media_id", "author_id", "topic_id", "media_type",
                                 "surface"], ...] = Field(
        default=("media_id", "author_id", "topic_id", "media_type", "surface"), min_length=1,
        description="the target item's sparse features the backbone sees")
    item_tables: ItemTables = ItemTables()
    table_init_std: Real = Field(default=0.1, gt=0)
    sparse_min_rows: int = Field(
        default=1 << 20, ge=0, le=INT64_MAX,
        description="slice tables with at least this many rows get sparse gradients")
    optimizer: Optimizers = Optimizers()
    batch_size: Count = 256
    steps: Count | None = None
    epochs: Count | None = None
    eval_every: Count = Field(default=500, description="steps between evaluations")
    early_stopping: EarlyStopping | None = Field(
        default=None, description="stop after this many evaluations without a new best")
    checkpoint_every: Count = Field(default=500, description="steps between checkpoints")
    seed: Seed = 0
    threads: int | None = Field(default=None, gt=0, le=MAX_THREADS,
                                description="torch's intra-op and Numba's CPU kernel threads "
                                            "(default: theirs, one per core)")
    device: str = Field(default="cpu", pattern=DEVICE_PATTERN,
                        description="where the model trains: cpu, cuda or cuda:N")
    devices: tuple[Annotated[str, Field(pattern=DEVICE_PATTERN)], ...] | None = Field(
        default=None, min_length=1,
        description="train on several devices, one process each ([cpu, cpu] or [cuda:0, "
                    "cuda:1]): the slice tables sharded by torchrec, the rest data parallel")
    sharding: Sharding = Sharding()
    pooling: Literal["ebc", "fused"] = Field(
        default="ebc", description="how the slice tables pool histories: torchrec's "
                                  "EmbeddingBagCollection over the jagged kernel output, or "
                                  "the fused kernel with a scatter-add backward (default: "
                                  "fused when the device is a GPU, where it measured faster)")
    kernel: Literal["cpu", "reference", "cuda"] = Field(
        default="cpu", description="slice kernel backend (default: cuda when the device is a "
                                   "GPU, so the jagged batch is built where it is used)")

    @field_validator("tasks")
    @classmethod
    def _some_task(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and not value:
            raise ValueError("no task to train: name at least one, or leave tasks out for "
                             "every task of the examples")
        return value

    @model_validator(mode="after")
    def _length(self) -> "TrainConfig":
        if (self.steps is None) == (self.epochs is None):
            raise ValueError("give exactly one of steps and epochs")
        self._check_devices()
        if "kernel" not in self.model_fields_set and self.device.startswith("cuda"):
            object.__setattr__(self, "kernel", "cuda")  # frozen model: set while validating
        if "pooling" not in self.model_fields_set and self.device.startswith("cuda"):
            # on a GPU the fused op trains faster (docs/benchmarks.md, "Training path")
            object.__setattr__(self, "pooling", "fused")
        if self.devices is not None and len(self.devices) > 1:
            object.__setattr__(self, "pooling", "ebc")  # checked by _check_devices
        return self

    def _check_devices(self) -> None:
        """``devices``: one kind of device, no GPU twice, given instead of ``device`` (which
        becomes the first); several of them train through the jagged path."""
        if self.devices is None:
            return
        if "device" in self.model_fields_set and self.device != self.devices[0]:
            # A stored config has both: device is the first of devices.
            raise _KeyError("devices", f"device is {self.device} and devices start with "
                            f"{self.devices[0]}", hint="give device or devices, not both")
        kinds = {d.split(":")[0] for d in self.devices}
        if len(kinds) > 1:
            raise _KeyError("devices", "all devices must be of one kind (cpu or cuda)")
        gpus = [d if ":" in d else "cuda:0" for d in self.devices if d != "cpu"]
        if len(set(gpus)) < len(gpus):
            raise _KeyError("devices", "a GPU is named twice", hint="one process per GPU")
        object.__setattr__(self, "device", self.devices[0])  # frozen model: while validating
        if len(self.devices) == 1:
            return
        if self.pooling == "fused" and "pooling" in self.model_fields_set:
            raise _KeyError("pooling", "pooling: fused trains on one device; several devices "
                            "train through the jagged kernel output and torchrec's sharded "
                            "EmbeddingBagCollection", hint="use pooling: ebc")
        if self.optimizer.sparse.type == "sparse_adam":
            raise _KeyError("optimizer.sparse.type", "sparse_adam has no sharded (fused) "
                            "form in torchrec", hint="use rowwise_adagrad or adagrad with "
                                                     "several devices")
        plan = self.sharding.plan if isinstance(self.sharding.plan, dict) else {}
        for table, kind in plan.items():
            if kind == "row_wise" and kinds == {"cpu"}:
                raise _KeyError(f"sharding.plan.{table}", "row_wise sharding needs CUDA "
                                "devices: torchrec's planner on the CPU (gloo) shards "
                                "table_wise, column_wise or data_parallel",
                                hint="use table_wise, column_wise or data_parallel")
            if kind == "column_wise" and self.optimizer.sparse.type == "rowwise_adagrad":
                raise _KeyError(f"sharding.plan.{table}", "column_wise shards keep one "
                                "row-wise Adagrad accumulator per shard, over its columns "
                                "only: another optimizer than on one device",
                                hint="use optimizer.sparse.type: adagrad, or another "
                                     "sharding type for this table")

    # The file the config was read from (not part of the config): errors found after
    # validation name it like pydantic's do.
    _file: str | None = PrivateAttr(default=None)

    def to_json(self) -> str:
        return self.model_dump_json()

    def __eq__(self, other: object) -> bool:
        # Equal configs are equal wherever they were read from.
        if not isinstance(other, TrainConfig):
            return NotImplemented
        return self.model_dump() == other.model_dump()

    def __hash__(self) -> int:
        return hash(self.model_dump_json())

    def where(self, key: str) -> str:
        """``<file>: <key>`` for an error at ``key`` (just ``key`` when not read from a file)."""
        return f"{self._file}: {key}" if self._file else key

    def resolved_plugin_options(self, plugins: Plugins | None = None
                                ) -> tuple[BaseModel | None, BaseModel]:
        """The encoder's and backbone's options, validated by their plugins."""
        plugins = plugins or get_plugins()
        encoder = None
        if self.encoder is not None:
            encoder = plugin_options(plugins, "encoder", self.encoder, "encoder")
        backbone = plugin_options(plugins, "backbone", self.backbone, "backbone")
        return encoder, backbone


class _KeyError(ValueError):
    """A problem the whole-config check finds at another key than the top level."""

    def __init__(self, key: str, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.key, self.message, self.hint = key, message, hint


def _dotted(loc: tuple) -> str:
    return ".".join(str(part) for part in loc)


def _suggest(model: type[BaseModel], loc: tuple) -> str | None:
    """'did you mean ...' for an unknown key, from the fields of the model it belongs to."""
    target: Any = model
    for part in loc[:-1]:
        field = getattr(target, "model_fields", {}).get(part)
        if field is None:
            return None
        annotation = field.annotation
        candidates = [a for a in getattr(annotation, "__args__", (annotation,))
                      if isinstance(a, type) and issubclass(a, BaseModel)]
        if not candidates:
            return None
        target = candidates[0]
    fields = list(getattr(target, "model_fields", {}))
    close = difflib.get_close_matches(str(loc[-1]), fields, n=1)
    return f"did you mean {close[0]!r}?" if close else (
        f"allowed: {', '.join(fields)}" if fields else None)


def config_error(exc: ValidationError, model: type[BaseModel], prefix: str,
                 file: str | None) -> ConfigError:
    """The first problem of a pydantic error as a one-line ConfigError at its key path."""
    err = exc.errors()[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
    located = err.get("ctx", {}).get("error")
    if isinstance(located, _KeyError):  # a whole-config check that names its key
        loc = (*loc, *located.key.split("."))
    key = ".".join(filter(None, [prefix, _dotted(loc)])) or "(top level)"
    where = f"{file}: {key}" if file else key
    hint = None
    if isinstance(located, _KeyError):
        message, hint = located.message, located.hint
    elif err["type"] == "extra_forbidden":
        message = "unknown key"
        hint = _suggest(model, loc)
    elif err["type"] == "missing":
        message = "missing key"
    else:
        message = err["msg"].removeprefix("Value error, ")
        if "input" in err and not isinstance(err["input"], (dict, list)):
            message += f" (got {err['input']!r})"
    more = len(exc.errors()) - 1
    if more:
        hint = (hint + "; " if hint else "") + f"{more} more problem{'s' * (more > 1)}"
    return ConfigError(message, where=where, hint=hint)


def validated(model: type[Model], raw: Any, file: str | None) -> Model:
    """``model`` validated from ``raw``; its first problem a :class:`ConfigError` at the key
    path (:func:`config_error`)."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise config_error(exc, model, "", file) from None


def plugin_options(plugins: Plugins, kind: str, section: PluginSection, key: str,
                   file: str | None = None) -> BaseModel:
    """Validate a plugin section's options against the plugin's options model."""
    where = f"{file}: {key}.type" if file else f"{key}.type"
    try:
        registration = plugins.registry(kind).get(section.type, where=where)
    except NotFoundError as exc:
        raise ConfigError(exc.message, where=exc.where, hint=exc.hint) from None
    try:
        return registration.options(**section.options)
    except ValidationError as exc:
        raise config_error(exc, registration.options, key, file) from None


def config_path(value: Any, base: Path) -> str | None:
    """A path a config file names, relative to its folder ``base`` unless absolute, ``~``
    expanded and ``..`` resolved (None stays None)."""
    if value is None:
        return None
    p = Path(str(value)).expanduser()
    return str(absolute_path(p if p.is_absolute() else base / p))


def _resolve_paths(raw: dict, base: Path) -> dict:
    def fix(value: Any) -> Any:
        return config_path(value, base)

    raw = dict(raw)
    for key in ("spec", "out"):
        if key in raw:
            raw[key] = fix(raw[key])
    data = raw.get("data")
    if isinstance(data, dict):
        data = dict(data)
        for key in ("path", "events", "examples", "cache_dir"):
            if key in data:
                data[key] = fix(data[key])
        raw["data"] = data
    return raw


def parse_config(raw: Any, *, file: str | None = None, base: Path | None = None,
                 plugins: Plugins | None = None) -> TrainConfig:
    """Validate a config mapping (plugin options included); errors name the key path."""
    if not isinstance(raw, dict):
        raise ConfigError("a training config is a mapping of keys to values",
                          where=file or "(config)")
    if isinstance(raw.get("data"), (str, Path)):
        raw = {**raw, "data": {"path": raw["data"]}}  # `data: FOLDER` is short for data.path
    if base is not None:
        raw = _resolve_paths(raw, base)
    config = validated(TrainConfig, raw, file)
    plugins = plugins or get_plugins()
    if config.encoder is not None:
        plugin_options(plugins, "encoder", config.encoder, "encoder", file)
    plugin_options(plugins, "backbone", config.backbone, "backbone", file)
    config._file = file
    return config


def read_config_file(path: str | Path) -> tuple[Any, str, Path]:
    """A YAML config file's content, the path errors show and the folder its relative
    paths start from; a :class:`ConfigError` (``file:line:col`` for bad YAML) otherwise.

    The file must be UTF-8, at most :data:`MAX_CONFIG_BYTES` long, hold at most
    :data:`MAX_CONFIG_VALUES` values with its aliases expanded, and give no key twice in
    one mapping.
    """
    path = Path(path)
    shown = display_path(path)
    try:
        with path.open("rb") as file:
            data = file.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError("no such config file", where=shown) from None
    except IsADirectoryError:
        raise ConfigError("this is a folder, not a config file", where=shown) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the config file: {exc.strerror or exc}",
                          where=shown) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"the config file is larger than {MAX_CONFIG_BYTES:,} bytes",
                          where=shown, hint="a config is a few dozen keys")
    raw = _load_yaml(_config_text(data, shown), shown)
    return raw, shown, absolute_path(path).parent


def _config_text(data: bytes, shown: str) -> str:
    """A config file's bytes as text: UTF-8 (a byte order mark allowed)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ConfigError("the config file is UTF-16 text; dv365 reads UTF-8", where=shown,
                          hint="save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(f"not UTF-8 text (byte 0x{data[exc.start]:02x})",
                          where=f"{shown}:{line}:{column}", hint="save it as UTF-8") from None


_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when built


class _ConfigLoader(_SafeLoader):
    """The safe loader that refuses a key given twice in one mapping."""

    shown = "(config)"

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or \
                    key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node)
            if key in first:
                raise ConfigError(f"duplicate key {key!r}", where=_at(self.shown, key_node),
                                  hint=f"first given at line "
                                       f"{first[key].start_mark.line + 1}")
            first[key] = key_node
        return super().construct_mapping(node, deep=deep)


def _at(shown: str, node: yaml.Node) -> str:
    mark = node.start_mark
    return f"{shown}:{mark.line + 1}:{mark.column + 1}"


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_size(root: yaml.Node, shown: str) -> None:
    """Refuse a document of more than :data:`MAX_CONFIG_VALUES` values, aliases expanded,
    or one whose alias holds itself; walks each distinct node once."""
    values: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, closing = stack.pop()
        key = id(node)
        if closing:
            open_nodes.discard(key)
            values[key] = 1 + sum(values[id(child)] for child in _children(node))
            if values[key] > MAX_CONFIG_VALUES:
                raise ConfigError(f"the config holds more than {MAX_CONFIG_VALUES:,} values "
                                  "with its aliases expanded", where=_at(shown, node),
                                  hint="write the values out, or use fewer aliases")
            continue
        if key in values:
            continue
        if key in open_nodes:
            raise ConfigError("an alias refers to a value that holds it",
                              where=_at(shown, node))
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in values)


def _load_yaml(text: str, shown: str) -> Any:
    loader = _ConfigLoader(text)
    loader.shown = shown
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_size(node, shown)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{shown}:{mark.line + 1}:{mark.column + 1}" if mark else shown
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"not valid YAML: {problem}", where=where) from None
    finally:
        loader.dispose()


def _folder_problem(path: Path) -> str | None:
    """Why ``path`` cannot be (or become) a folder: it, or a folder above it, is a file."""
    for at in (path, *path.parents):
        try:
            if not at.exists():
                continue
        except OSError:
            return None
        if at.is_dir():
            return None
        if at == path:
            return f"{display_path(at)} is a file, not a folder"
        return f"{display_path(path)} is under {display_path(at)}, a file"
    return None


def check_folders(config: TrainConfig) -> None:
    """A :class:`ConfigError` at ``out`` or ``data.cache_dir`` when that folder cannot be
    made: it is a file, or under one."""
    for key, path in (("out", config.out), ("data.cache_dir", config.data.cache_dir)):
        problem = None if path is None else _folder_problem(Path(path))
        if problem:
            raise ConfigError(problem, where=config.where(key), hint="choose a folder")


def load_config(path: str | Path, *, plugins: Plugins | None = None) -> TrainConfig:
    """Read and validate a YAML training config (:func:`read_config_file`), its ``out`` and
    ``data.cache_dir`` folders checked makeable (:func:`check_folders`)."""
    raw, shown, base = read_config_file(path)
    config = parse_config(raw, file=shown, base=base, plugins=plugins)
    check_folders(config)
    return config


def config_from_json(text: str, *, plugins: Plugins | None = None,
                     file: str = "checkpoint config") -> TrainConfig:
    """The config stored in a checkpoint; errors name ``file`` (the checkpoint's path)."""
    return parse_config(json.loads(text), file=file, plugins=plugins)
