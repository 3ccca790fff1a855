"""The foundation model: slice tables, the user encoder and the backbone, and how it is built.

:class:`FoundationModel` is what ``dv365 train`` trains (:mod:`dv365.model.train` holds the
loop). Here also: the spec a config names (:func:`load_spec`, :func:`resolve_spec`), the
builders a config and an examples dataset make it from (:func:`build_tasks`,
:func:`build_model`, :func:`initial_task_bias`), rebuilding a trained model from its
checkpoint alone (:func:`load_foundation_model`), and the exported user embedding,
:func:`embed_users`: the encoder output ``[N_out, D]`` of a user at a time, flattened.

A model is a function of its config, its spec's IR and its :class:`ModelInputs` (what the
examples dataset tells about its shape: the tasks, the target item's sparse features and their
table rows, the number of dense features). Checkpoints record all three, so export rebuilds
the exact model without the training data.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dv365.data.event_store import EventStore
from dv365.data.validate import DatasetReader
from dv365.data.vocabulary import VocabLike
from dv365.durations import hours_ms
from dv365.errors import ConfigError, DataError
from dv365.kernels.backend import check_available
from dv365.model.backbones.options import BackboneInputs, ItemFeature
from dv365.model.checkpoint import load_checkpoint
from dv365.model.config import TrainConfig, config_from_json
from dv365.model.tables import SliceTables
from dv365.model.tasks import Task
from dv365.paths import display_path
from dv365.plugins import Plugins, get_plugins
from dv365.slices.ir import SpecIR


class FoundationModel(nn.Module):
    """Slice tables + encoder (the user tower, optional) + backbone."""

    def __init__(self, tables: SliceTables | None, encoder: nn.Module | None,
                 backbone: nn.Module, num_dense: int, num_tasks: int):
        super().__init__()
        self.tables = tables
        self.encoder = encoder
        self.backbone = backbone
        self.register_buffer("dense_mean", torch.zeros(num_dense))
        self.register_buffer("dense_std", torch.ones(num_dense))
        # One output offset per task, initialized from the training labels (logit of the
        # positive rate, mean regression target): rare tasks (a 1% like rate is a logit of
        # -4.6) start calibrated instead of spending the first thousand steps getting there.
        self.task_bias = nn.Parameter(torch.zeros(num_tasks))

    def user_vectors(self, kjt) -> torch.Tensor:
        """The user embedding vectors ``[G, N_out, D]`` of a batch of histories (a jagged
        ``KeyedJaggedTensor``, or a :class:`~dv365.model.tables.HistoryBatch` to pool fused)."""
        return self.encoder(self.tables(kjt))

    def forward(self, kjt, group_of_example: torch.Tensor, sparse: dict[str, torch.Tensor],
                dense: torch.Tensor) -> torch.Tensor:
        user = None
        if self.encoder is not None:
            user = self.user_vectors(kjt).index_select(0, group_of_example)
        dense = (dense - self.dense_mean) / self.dense_std
        return self.backbone(user, sparse, dense) + self.task_bias


def load_spec(path: Path, vocab: VocabLike | None = None) -> SpecIR:
    """A compiled IR ``.json`` or a slice spec, against ``vocab`` (the data's; default: the
    generator's vocabulary): :func:`dv365.slices.compile.load_spec`."""
    from dv365.slices.compile import load_spec as load_spec_file

    if not path.exists():
        raise ConfigError("no such spec file", where=f"spec: {display_path(path)}")
    return load_spec_file(path, vocab)


def resolve_spec(config: TrainConfig) -> SpecIR:
    """The IR a config trains with: its spec against the vocabulary its events data declares
    (a ``.slice`` spec compiled against it, an IR refused if it names a value the data does
    not declare), with ``gap_hours`` applied when set. The ``kernel`` backend that will
    run it must be one this machine has (a :class:`ConfigError` at ``kernel``)."""
    check_available(config.kernel, where=config.where("kernel"))
    vocab = DatasetReader(display_path(config.data.events_path), "events").meta
    ir = load_spec(config.spec, vocab)
    if config.gap_hours is not None:
        ir = ir.model_copy(update={"gap_ms": hours_ms(config.gap_hours)})
    return ir


def build_tasks(config: TrainConfig, declared: dict[str, str]) -> tuple[Task, ...]:
    """The config's tasks (default: all) from the examples' declared ``name -> kind``."""
    names = list(config.tasks) if config.tasks is not None else list(declared)
    if not declared:
        raise DataError("the examples declare no tasks: there is nothing to train",
                        where=display_path(config.data.examples_path),
                        hint="examples need label columns and their tasks in the metadata")
    unknown = [n for n in names if n not in declared]
    if unknown:
        raise ConfigError(f"the examples declare no task {unknown[0]!r}",
                          where=config.where("tasks"), hint=f"declared: {', '.join(declared)}")
    return tuple(Task(n, declared[n], config.log1p_regression and declared[n] == "regression")
                 for n in names)


@dataclass(frozen=True)
class ModelInputs:
    """What building a model needs from the examples dataset: the tasks (in output order),
    the target item's sparse features with their table rows, the number of dense features."""

    tasks: tuple[Task, ...]
    item_features: tuple[ItemFeature, ...]
    num_dense: int

    def to_json(self) -> str:
        return json.dumps({
            "tasks": [{"name": t.name, "kind": t.kind, "log1p": t.log1p} for t in self.tasks],
            "item_features": [{"name": f.name, "num_rows": f.num_rows}
                              for f in self.item_features],
            "num_dense": self.num_dense,
        })

    @classmethod
    def from_json(cls, text: str) -> "ModelInputs":
        """The inputs :meth:`to_json` wrote; a ``ValueError`` for anything else."""
        try:
            raw = json.loads(text)
            tasks = tuple(Task(str(t["name"]), t["kind"], bool(t["log1p"]))
                          for t in raw["tasks"])
            features = tuple(ItemFeature(str(f["name"]), int(f["num_rows"]))
                             for f in raw["item_features"])
            num_dense = int(raw["num_dense"])
        except (TypeError, KeyError, ValueError) as exc:
            raise ValueError(f"malformed model inputs: {type(exc).__name__}: {exc}") from None
        bad = [t.kind for t in tasks if t.kind not in ("binary", "regression")]
        if bad:
            raise ValueError(f"malformed model inputs: task kind {bad[0]!r}")
        return cls(tasks, features, num_dense)


def build_model(config: TrainConfig, ir: SpecIR, inputs: ModelInputs,
                plugins: Plugins) -> FoundationModel:
    """The model a config describes (initialized from ``config.seed``); a
    :class:`ConfigError` naming the table when its tables would not fit this machine's
    memory (:func:`check_table_memory`)."""
    encoder_options, backbone_options = config.resolved_plugin_options(plugins)
    check_table_memory(config, ir if config.encoder is not None else None, inputs,
                       getattr(backbone_options, "embedding_dim", None))
    torch.manual_seed(config.seed)
    tables = encoder = None
    user_vectors = 0
    if config.encoder is not None:
        sparse_min_rows = 0 if config.optimizer.sparse.type == "sparse_adam" else \
            config.sparse_min_rows
        tables = SliceTables(ir, init_std=config.table_init_std,
                             sparse_min_rows=sparse_min_rows)
        registration = plugins.encoders.get(config.encoder.type, where="encoder.type")
        encoder = registration.factory(encoder_options, num_slices=len(ir.slices), dim=ir.dim)
        user_vectors = int(encoder.num_outputs)
    backbone_inputs = BackboneInputs(user_vectors, ir.dim if user_vectors else 0,
                                     inputs.item_features, inputs.num_dense, inputs.tasks)
    registration = plugins.backbones.get(config.backbone.type, where="backbone.type")
    backbone = registration.factory(backbone_options, inputs=backbone_inputs)
    return FoundationModel(tables, encoder, backbone, inputs.num_dense, len(inputs.tasks))


def available_memory() -> int | None:
    """Bytes of memory this machine can still give (Linux's ``MemAvailable``, else the
    physical memory); None when neither is known."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_table_memory(config: TrainConfig, ir: SpecIR | None, inputs: ModelInputs,
                       item_dim: int | None, *, available: int | None = None) -> None:
    """Refuse, before allocating, embedding tables (the spec's slice tables, and the item
    tables of width ``item_dim`` when the backbone has one) whose float32 weights alone
    exceed the memory this machine can give: a :class:`ConfigError` naming the largest
    table and the bytes, at ``spec`` or ``item_tables.<feature>``."""
    available = available_memory() if available is None else available
    if available is None:
        return
    tables: list[tuple[int, str, str]] = []  # (bytes, what, config key)
    if ir is not None:
        tables += [(t.num_rows * t.dim * 4, f"the spec's table {t.name!r} ({t.num_rows:,} "
                    f"rows x {t.dim})", "spec") for t in ir.tables if ir.slices_of_table(t.name)]
    if item_dim:
        tables += [(f.num_rows * item_dim * 4, f"the item table {f.name!r} ({f.num_rows:,} "
                    f"rows x {item_dim})", f"item_tables.{f.name}")
                   for f in inputs.item_features]
    total = sum(size for size, _, _ in tables)
    if total <= available:
        return
    size, what, key = max(tables)
    raise ConfigError(f"{what} needs {_gib(size)}; the embedding tables need {_gib(total)} "
                      f"and this machine has {_gib(available)} of memory available",
                      where=config.where(key), hint="use fewer rows")


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"


def initial_task_bias(labels: np.ndarray, tasks: tuple[Task, ...]) -> np.ndarray:
    """Logit of each binary task's positive rate, mean target of each regression task."""
    out = np.zeros(len(tasks), np.float32)
    for k, task in enumerate(tasks):
        y = labels[:, k].astype(np.float64)
        if task.kind == "binary":
            p = float(np.clip(y.mean(), 1e-4, 1 - 1e-4))
            out[k] = np.log(p / (1 - p))
        else:
            out[k] = float(np.mean(np.log1p(np.maximum(y, 0)) if task.log1p else y))
    return out


def torch_device(name: str, *, where: str = "device",
                 hint: str = "use device: cpu") -> torch.device:
    """The device ``name`` (``cpu``, ``cuda``, ``cuda:N``) if torch can use it; a
    :class:`ConfigError` at ``where`` otherwise (``hint`` says what to ask for instead)."""
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("this machine has no CUDA device torch can use", where=where,
                              hint=hint)
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(f"{name} does not exist: torch sees {count} CUDA device(s)",
                              where=where, hint=f"cuda:0 to cuda:{count - 1}")
    return device


@dataclass(frozen=True)
class TrainedModel:
    """A foundation model rebuilt from a checkpoint, with what it was built from."""

    path: Path
    step: int
    model: FoundationModel
    ir: SpecIR
    config: TrainConfig
    inputs: ModelInputs


def load_foundation_model(checkpoint_path: str | os.PathLike, *, device: str = "cpu",
                          plugins: Plugins | None = None,
                          spec: SpecIR | None = None) -> TrainedModel:
    """Rebuild the trained model of a checkpoint: same config, plugins, IR and weights, in
    eval mode on ``device``. Needs no training data.

    ``spec``, when given, must be the spec the checkpoint was trained with (a
    :class:`ConfigError` otherwise). A checkpoint that cannot be rebuilt (format version 1,
    a plugin that is not installed, weights that do not fit) is a one-line
    :class:`~dv365.errors.Dv365Error` naming the file.
    """
    path = Path(checkpoint_path)
    target = torch_device(device)
    ckpt = load_checkpoint(path, spec=spec)
    if ckpt.model_inputs_json is None:
        raise DataError(f"checkpoint format version {ckpt.version} does not record the model's "
                        "inputs (tasks, item features, dense features), so the model cannot be "
                        "rebuilt without its examples", where=str(path),
                        hint="train the run again (or resume it with more steps) with this "
                             "dv365 to write a rebuildable checkpoint")
    try:
        inputs = ModelInputs.from_json(ckpt.model_inputs_json)
    except ValueError as exc:
        raise DataError(str(exc), where=str(path)) from None
    plugins = plugins or get_plugins()
    config = config_from_json(ckpt.config_json, plugins=plugins, file=str(path))
    # Building seeds torch's generator; the caller's random state is left as it was.
    with torch.random.fork_rng(devices=[]):
        model = build_model(config, ckpt.spec, inputs, plugins)
    problem = load_weights(model, ckpt.model)
    if problem:
        raise DataError(f"the checkpoint's weights do not fit the model its config builds: "
                        f"{problem}", where=str(path),
                        hint="were the plugins changed since it was trained?")
    model.to(target).eval()
    return TrainedModel(path, ckpt.step, model, ckpt.spec, config, inputs)


def load_weights(model: nn.Module, state: dict[str, torch.Tensor]) -> str | None:
    """Load ``state`` into ``model``; what does not fit, in a few words (None if all does)."""
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # a tensor of another shape: torch's line after its header
        lines = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()]
        return lines[0] if lines else type(exc).__name__
    parts = [f"{what} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
             for what, keys in (("missing", result.missing_keys),
                                ("unexpected", result.unexpected_keys)) if keys]
    return "; ".join(parts) or None


def embed_users(model: FoundationModel, ir: SpecIR, store: EventStore, users, request_ts, *,
                batch_size: int = 256, backend: str | None = None) -> torch.Tensor:
    """The exported embedding ``[U, N_out * D]`` of store users ``users`` (indices) from their
    history before ``request_ts - gap`` (one time for all, or one per user); ``model`` needs
    an encoder (a ``ValueError`` otherwise). ``backend`` picks the slice kernel."""
    from dv365.kernels.jagged import slice_jagged

    if model.encoder is None:
        raise ValueError("a model without a user tower has no user embedding")
    users = np.asarray(users, dtype=np.int64)
    request_ts = np.broadcast_to(np.asarray(request_ts, dtype=np.int64), users.shape)
    extra = {} if backend is None else {"backend": backend}
    device = next(model.parameters()).device
    model.eval()
    parts = []
    with torch.no_grad():
        for lo in range(0, len(users), batch_size):
            jag = slice_jagged(ir, store, users[lo:lo + batch_size],
                               request_ts[lo:lo + batch_size], **extra)
            parts.append(model.user_vectors(jag.kjt.to(device)).flatten(1).cpu())
    return torch.cat(parts) if parts else torch.zeros(0, 0)
