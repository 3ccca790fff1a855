"""The foundation model: slice tables, the user encoder and the backbone, and how it is built.

:class:`FoundationModel` is what ``dv365 train`` trains (:mod:`dv365.model.train` holds the
loop). Here also: the spec a config names (:func:`load_spec`, :func:`resolve_spec`), the
builders a config and an examples dataset make it from (:func:`build_tasks`,
:func:`build_model`, :func:`initial_task_bias`), and the exported user embedding,
:func:`embed_users`: the encoder output ``[N_out, D]`` of a user at a time, flattened.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from dv365.durations import hours_ms
from dv365.errors import ConfigError
from dv365.model.backbones.options import BackboneInputs
from dv365.model.config import TrainConfig
from dv365.model.tables import SliceTables
from dv365.model.tasks import Task
from dv365.plugins import Plugins
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


def load_spec(path: Path) -> SpecIR:
    """A compiled IR ``.json`` or a slice spec (compiled by the slice language)."""
    if not path.exists():
        raise ConfigError("no such spec file", where=f"spec: {path}")
    if path.suffix == ".json":
        try:
            return SpecIR.from_json(path.read_text())
        except ValueError as exc:
            raise ConfigError(f"not a compiled slice IR: {str(exc).splitlines()[0]}",
                              where=str(path)) from None
    from dv365.slices.compile import compile_spec

    return compile_spec(path)


def resolve_spec(config: TrainConfig) -> SpecIR:
    ir = load_spec(config.spec)
    if config.gap_hours is not None:
        ir = ir.model_copy(update={"gap_ms": hours_ms(config.gap_hours)})
    return ir


def build_tasks(config: TrainConfig, declared: dict[str, str]) -> tuple[Task, ...]:
    names = list(config.tasks) if config.tasks is not None else list(declared)
    unknown = [n for n in names if n not in declared]
    if unknown:
        raise ConfigError(f"the examples declare no task {unknown[0]!r}", where="tasks",
                          hint=f"declared: {', '.join(declared)}")
    return tuple(Task(n, declared[n], config.log1p_regression and declared[n] == "regression")
                 for n in names)


def build_model(config: TrainConfig, ir: SpecIR, tasks: tuple[Task, ...], item_feats,
                num_dense: int, plugins: Plugins) -> FoundationModel:
    """The model a config describes (initialized from ``config.seed``)."""
    torch.manual_seed(config.seed)
    encoder_options, backbone_options = config.resolved_plugin_options(plugins)
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
    inputs = BackboneInputs(user_vectors, ir.dim if user_vectors else 0, tuple(item_feats),
                            num_dense, tasks)
    registration = plugins.backbones.get(config.backbone.type, where="backbone.type")
    backbone = registration.factory(backbone_options, inputs=inputs)
    return FoundationModel(tables, encoder, backbone, num_dense, len(tasks))


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


def embed_users(model: FoundationModel, ir: SpecIR, store, users, request_ts, *,
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
