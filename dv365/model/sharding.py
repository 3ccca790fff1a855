"""The foundation model on several ranks: torchrec's ``DistributedModelParallel`` over it.

The slice tables' ``EmbeddingBagCollection`` is sharded by the plan torchrec's
``EmbeddingShardingPlanner`` chooses (:func:`sharding_plan`; the config's ``sharding.plan``
fixes a table's sharding type); everything else (encoder, backbone, its item tables) is data
parallel under DDP, which DMP sets up. Each rank feeds the sharded tables the jagged kernel
output (a KJT) of its part of the batch.

The two paths train the same model with the same numbers:

- sharded tables (table-, row-, column-wise) take fbgemm's fused optimizer, applied in the
  backward: ``EXACT_ROWWISE_ADAGRAD`` is :class:`~dv365.model.optim.RowWiseAdagrad`,
  ``EXACT_ADAGRAD`` is ``torch.optim.Adagrad``; torchrec divides their gradients by the world
  size, as DDP does the dense ones;
- data-parallel tables and the item tables keep the single-device optimizers, on gradients
  DDP has averaged (the item tables get dense gradients here: DDP reduces them in place);
- column-wise shards keep a row-wise accumulator per shard (over its own columns), another
  optimizer than on one device, so ``rowwise_adagrad`` with ``column_wise`` is refused by the
  config and the planner's choices leave column-wise out.

Checkpoints are those of a single-device run: :meth:`ShardedModel.full_state` gathers every
shard of the weights and of the fused optimizer's accumulators on rank 0, in the single-device
names and optimizer layout; :meth:`ShardedModel.load_full_state` cuts a full state into this
run's shards. A run saved on any number of ranks resumes on any other.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn

from dv365.errors import ConfigError
from dv365.model.config import TrainConfig
from dv365.model.optim import build_optimizers, sparse_optimizer, table_parameters
from dv365.model.ranks import Ranks
from dv365.slices.ir import SpecIR

TABLES = "tables.ebc"  # the slice tables' EBC, as DMP names it in the plan
FUSED_OPTIMIZERS = {"rowwise_adagrad": "EXACT_ROWWISE_ADAGRAD", "adagrad": "EXACT_ADAGRAD"}
# What the planner may choose for a table the config does not fix (gloo shards no rows).
AUTO_TYPES = {"cpu": ("table_wise", "column_wise", "data_parallel"),
              "cuda": ("table_wise", "row_wise", "column_wise", "data_parallel")}


@contextlib.contextmanager
def quiet_torchrec() -> Iterator[None]:
    """Silence what torchrec and torch say while planning, sharding and gathering: a topology
    built without its factory, dry-run estimates, data-parallel tables without a sharding
    spec or caching, deprecations of its own calls. Nothing a user of dv365 acts on."""
    names = ("", "torchrec.distributed.planner.types", "torchrec.distributed.utils",
             "torchrec.distributed.planner.storage_reservations")
    loggers = [logging.getLogger(n) for n in names]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for log, level in zip(loggers, levels):
            log.setLevel(level)


def sharder(config: TrainConfig):
    """The EBC sharder whose fused optimizer is the config's table optimizer."""
    from fbgemm_gpu.split_embedding_configs import EmbOptimType
    from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder

    sparse = config.optimizer.sparse
    kind = getattr(EmbOptimType, FUSED_OPTIMIZERS[sparse.type])
    return EmbeddingBagCollectionSharder(fused_params={"optimizer": kind,
                                                       "learning_rate": sparse.lr,
                                                       "eps": sparse.eps})


def sharding_plan(model: nn.Module, config: TrainConfig, ir: SpecIR, ranks: Ranks):
    """torchrec's plan for the model's slice tables: the planner's choice among
    :data:`AUTO_TYPES` (no column-wise under row-wise Adagrad), the config's type for the
    tables ``sharding.plan`` names (a column-wise one split over every rank)."""
    from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, \
        Topology
    from torchrec.distributed.sharding_plan import column_wise

    fixed = config.sharding.plan if isinstance(config.sharding.plan, dict) else {}
    # Without a user tower there are no slice tables: DMP is DDP over the backbone.
    tables = [t.name for t in ir.tables if ir.slices_of_table(t.name)] \
        if model.tables is not None else []
    for name in fixed:
        if name not in tables:
            raise ConfigError(f"the spec has no slice table {name!r}",
                              where=config.where(f"sharding.plan.{name}"),
                              hint=f"its tables: {', '.join(tables)}")
    auto = [t for t in AUTO_TYPES[ranks.device.type]
            if not (t == "column_wise" and config.optimizer.sparse.type == "rowwise_adagrad")]
    constraints = {t: ParameterConstraints(sharding_types=[fixed.get(t)] if t in fixed
                                           else list(auto)) for t in tables}
    the_sharder = sharder(config)
    with quiet_torchrec():
        topology = Topology(world_size=ranks.world, compute_device=ranks.device.type)
        planner = EmbeddingShardingPlanner(topology=topology, constraints=constraints)
        plan = planner.collective_plan(model, [the_sharder], ranks.group)
    weights = dict(model.tables.ebc.named_parameters()) if tables else {}
    for name, kind in fixed.items():
        if kind == "column_wise":  # the planner may keep a small table whole
            plan.plan[TABLES][name] = column_wise(ranks=list(range(ranks.world)),
                                                  compute_kernel="fused")(
                weights[f"embedding_bags.{name}.weight"], ranks.world, ranks.world,
                ranks.device.type, the_sharder)
    return plan, the_sharder


class ShardedModel:
    """A :class:`~dv365.model.foundation.FoundationModel` under DMP on this rank, with the
    optimizers of its unsharded parameters and the single-device checkpoint layout.

    ``module`` is what the loop calls; ``optimizers`` the ``sparse`` (data-parallel and item
    tables) and ``dense`` optimizers it steps (the sharded tables' update runs in the
    backward)."""

    def __init__(self, model: nn.Module, config: TrainConfig, ir: SpecIR, ranks: Ranks):
        from torchrec.distributed import DistributedModelParallel
        from torchrec.distributed.types import ShardingEnv

        self.model, self.config, self.ranks = model, config, ranks
        for module in model.modules():  # DDP reduces dense gradients
            if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
                module.sparse = False
        names = {id(p): n for n, p in model.named_parameters()}
        # The single-device optimizers' parameter order: the checkpoint layout.
        self.sparse_names = [names[id(p)] for p in table_parameters(model)]
        self.single = build_optimizers(model, config.optimizer.sparse, config.optimizer.dense)
        self.sparse_groups = (self.single["sparse"].state_dict()["param_groups"]
                              if "sparse" in self.single else [])
        initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
        plan, the_sharder = sharding_plan(model, config, ir, ranks)
        self.plan = plan.plan.get(TABLES, {})
        self.sharded_tables = {t for t, p in self.plan.items()
                               if p.sharding_type != "data_parallel"}
        with quiet_torchrec():
            self.module = DistributedModelParallel(
                model, env=ShardingEnv.from_process_group(ranks.group), device=ranks.device,
                plan=plan, sharders=[the_sharder])
        # torch warns on every backward through fbgemm's CPU lookup, which has no autograd
        # kernel of its own (torchrec's autograd function wraps it).
        warnings.filterwarnings("ignore", message="fbgemm::dense_embedding_codegen_lookup")
        params = dict(model.named_parameters())
        self.local_sparse = [n for n in self.sparse_names if _table_of(n) not in
                             self.sharded_tables]
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        if self.local_sparse:
            self.optimizers["sparse"] = sparse_optimizer([params[n] for n in self.local_sparse],
                                                         config.optimizer.sparse)
        if "dense" in self.single:
            self.optimizers["dense"] = self.single["dense"]  # the same parameter objects
        del self.single
        self.load_full_state(initial, None)

    # ------------------------------------------------------------------ the full state
    def weights_problem(self, saved: dict[str, torch.Tensor]) -> str | None:
        """Keys or shapes of single-device weights that do not fit this model (its sharded
        tables by their full shapes), in a few words; None when all fit."""
        with quiet_torchrec():
            current = {k: tuple(v.size()) for k, v in self.model.state_dict().items()}
        missing = [k for k in current if k not in saved]
        unexpected = [k for k in saved if k not in current]
        if missing or unexpected:
            return "; ".join(f"{what} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                             for what, keys in (("missing", missing),
                                                ("unexpected", unexpected)) if keys)
        for key, shape in current.items():
            if shape != tuple(saved[key].shape):
                return f"{key} has shape {tuple(saved[key].shape)}, the model's {shape}"
        return None

    def _fused_state(self) -> dict[str, Any]:
        return self.module.fused_optimizer.state_dict()["state"]

    def full_state(self, step: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """The weights and the sparse optimizer's state of a single-device run (its names,
        its optimizer's parameter order), on rank 0; None on the others. Collective."""
        with quiet_torchrec():
            return self._full_state(step)

    def _full_state(self, step: int):
        weights = {}
        for key, value in self.model.state_dict().items():
            table = _table_of(key)
            full = _gather(value, self.ranks) if table in self.sharded_tables else \
                value.detach().cpu()
            if self.ranks.main:
                weights[key] = full
        fused = self._fused_state()
        local = {n: s for n, s in zip(self.local_sparse, self._local_optimizer_states())}
        states: dict[int, dict[str, Any]] = {}
        for index, name in enumerate(self.sparse_names):
            table = _table_of(name)
            if table in self.sharded_tables:
                mine = [v for k, v in fused.get(_fused_key(fused, table), {}).items()
                        if k.endswith(".momentum1")]
                full = _gather(mine[0] if mine else None, self.ranks)
                state = {"sum": full}
                if self.config.optimizer.sparse.type == "adagrad":
                    state["step"] = torch.tensor(float(step))
            else:
                state = local.get(name)
            if self.ranks.main and state is not None:
                states[index] = state
        if not self.ranks.main:
            return None
        groups = [{**g, "params": list(range(len(self.sparse_names)))}
                  for g in self.sparse_groups]
        return weights, {"state": states, "param_groups": groups}

    def _local_optimizer_states(self) -> list[dict[str, Any] | None]:
        if "sparse" not in self.optimizers:
            return []
        state = self.optimizers["sparse"].state_dict()["state"]
        return [state.get(i) for i in range(len(self.local_sparse))]

    def load_full_state(self, weights: dict[str, torch.Tensor],
                        sparse_state: dict[str, Any] | None) -> None:
        """Cut a single-device state (weights; the sparse optimizer's state, or None to keep
        this one's) into this rank's shards."""
        with quiet_torchrec():
            self._load_full_state(weights, sparse_state)

    def _load_full_state(self, weights: dict[str, torch.Tensor],
                         sparse_state: dict[str, Any] | None) -> None:
        current = self.model.state_dict()
        for key, value in current.items():
            if key not in weights:
                continue
            if _table_of(key) in self.sharded_tables:
                _scatter(weights[key], value)
            else:
                with torch.no_grad():
                    value.copy_(weights[key].to(value.device))
        self.model.load_state_dict(current, strict=False)
        if sparse_state is None:
            return
        by_name = {self.sparse_names[i]: s for i, s in sparse_state.get("state", {}).items()
                   if 0 <= i < len(self.sparse_names)}
        fused = self.module.fused_optimizer.state_dict()
        for table in self.sharded_tables:
            saved = by_name.get(_param_of(table), {}).get("sum")
            key = _fused_key(fused["state"], table)
            if saved is None or key is None:
                continue
            for name, value in fused["state"][key].items():
                if name.endswith(".momentum1"):
                    _scatter(saved, value)
        self.module.fused_optimizer.load_state_dict(fused)
        if "sparse" in self.optimizers:
            local = {i: by_name[n] for i, n in enumerate(self.local_sparse) if n in by_name}
            groups = self.optimizers["sparse"].state_dict()["param_groups"]
            self.optimizers["sparse"].load_state_dict({"state": local, "param_groups": groups})


def _table_of(key: str) -> str | None:
    """The slice table a state key belongs to (``tables.ebc.embedding_bags.<t>.weight``)."""
    prefix = f"{TABLES}.embedding_bags."
    return key[len(prefix):].split(".")[0] if key.startswith(prefix) else None


def _param_of(table: str) -> str:
    return f"{TABLES}.embedding_bags.{table}.weight"


def _fused_key(state: dict[str, Any], table: str) -> str | None:
    wanted = f"embedding_bags.{table}.weight"
    return next((k for k in state if k.endswith(wanted)), None)


def _local_shards(value) -> list[tuple[list[int], torch.Tensor]]:
    """``(offsets, tensor)`` of this rank's shards of a ShardedTensor (none for None)."""
    if value is None:
        return []
    return [(list(s.metadata.shard_offsets), s.tensor) for s in value.local_shards()]


def _gather(value, ranks: Ranks) -> torch.Tensor | None:
    """The full tensor of a ShardedTensor whose shards the ranks hold, on rank 0 (None on
    the others; ``value`` None on a rank that holds none). Collective."""
    mine = [(offsets, t.detach().cpu()) for offsets, t in _local_shards(value)]
    shape = list(value.size()) if value is not None else None
    parts: list[Any] = [None] * ranks.world if ranks.main else None
    dist.gather_object((shape, mine), parts, dst=0, group=ranks.group)
    if not ranks.main:
        return None
    shape = next(s for s, _ in parts if s is not None)
    full = torch.zeros(shape, dtype=next(t.dtype for _, m in parts for _, t in m))
    for _, shards in parts:
        for offsets, tensor in shards:
            full[tuple(slice(o, o + n) for o, n in zip(offsets, tensor.shape))] = tensor
    return full


def _scatter(full: torch.Tensor, value) -> None:
    """Copy this rank's part of ``full`` into the local shards of ``value``."""
    with torch.no_grad():
        for offsets, tensor in _local_shards(value):
            part = full[tuple(slice(o, o + n) for o, n in zip(offsets, tensor.shape))]
            tensor.copy_(part.reshape(tensor.shape).to(tensor.device, tensor.dtype))
