"""``dv365 train``: the training loop of the foundation model (built in
:mod:`dv365.model.foundation`) inside the backbone simulation network.

Per batch (whole history groups -- user-days or requests, see :mod:`dv365.model.examples`):

1. the slice kernels select each group's history before ``min(request_ts) - gap`` and emit
   jagged rows with per-bag weights (:func:`dv365.kernels.jagged.slice_jagged`);
2. the slice tables pool them (:class:`~dv365.model.tables.SliceTables`), ``[G, S, D]``
   (with ``pooling: fused``, steps 1-2 are one fused kernel with a scatter-add backward);
3. the encoder compresses them, ``[G, N_out, D]``, once per group, then each example gets
   its group's vectors;
4. the backbone predicts every task from the user vectors, the target item's sparse features
   and the dense context; ``L = sum BCE + alpha * MSE``;
5. row-wise Adagrad steps the tables (sparse gradients), Adam the rest, its learning rate on
   the configured schedule (warm-up, then decay).

Before the first step one line says how many examples see no history at the gap, and one
warns when the held-out split is too small to tell a 1% NE difference. Every ``eval_every``
steps the held-out (later) examples are evaluated with every registered metric that applies
to each task (``like/ne``, ``like/auc``, ``watch_time/mse``) and the record is appended to
``<out>/metrics.jsonl``; the step with the lowest held-out loss so far is kept as
``checkpoints/best.pt``, and ``early_stopping`` ends the run after ``patience`` evaluations
without a new best. Every ``checkpoint_every`` steps, and at the end, a checkpoint is written;
running the same config again resumes from the newest one (same data order, same optimizer
and schedule state, same random generators, same best so far), after checking that it is a
checkpoint of the same config: nothing in the run folder changes before that check passes. A
resumed run first drops the records of ``metrics.jsonl`` after its checkpoint's step (it trains
those steps again), so each step is recorded once; a run with nothing left to train records
nothing. A start that fails before its first record leaves no run folder behind.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dv365.atomic_write import write_text
from dv365.console import progress, stderr
from dv365.data.empty_history import empty_share
from dv365.data.metadata import one_line
from dv365.data.timeline import TimelineStore
from dv365.durations import duration_text
from dv365.errors import DataError, UsageError
from dv365.model.checkpoint import Checkpoint, latest_checkpoint, load_checkpoint, save_checkpoint
from dv365.model.config import TrainConfig
from dv365.model.examples import (
    Examples,
    before,
    group_batches,
    head,
    item_features,
    load_examples,
    split_by_time,
)
from dv365.model.foundation import (
    ModelInputs,
    build_model,
    build_tasks,
    initial_task_bias,
    load_weights,
    resolve_spec,
    torch_device,
)
from dv365.model.metrics import NE_RESOLUTION, expected_ne_standard_error, ne_standard_error
from dv365.model.optim import build_optimizers, build_schedulers
from dv365.model.ranks import Ranks, run_on_ranks, torchrun_ranks, torchrun_world
from dv365.model.tables import HistoryBatch
from dv365.model.tasks import predictions, task_losses
from dv365.plugins import Plugins, get_plugins

METRICS_FILE = "metrics.jsonl"
# Keys that may change between a run and its resumption: how long, how often to report, and
# where, by which path and on how many threads the same model computes.
RESUMABLE_KEYS = ("steps", "epochs", "eval_every", "checkpoint_every", "early_stopping",
                  "device", "devices", "sharding", "kernel", "pooling", "threads")
# Keys that say where the run and its cache are, not what it trains: a run folder copied
# elsewhere resumes.
LOCATION_KEYS = ("out", "data.cache_dir")


@dataclass
class TrainResult:
    """What a finished ``train`` call reports.

    ``metrics`` is the last evaluation's record; ``best_step`` / ``best_metrics`` the
    evaluation with the lowest held-out loss (its weights are ``checkpoints/best.pt``);
    ``data`` what the run measured of its examples before training (the empty-history
    shares, the held-out users, NE's standard error per task) and ``warnings`` the lines it
    warned with.
    """

    run_dir: Path
    step: int
    metrics: dict[str, float]
    samples_per_s: float
    resumed_from: int
    best_step: int | None = None
    best_metrics: dict[str, float] = field(default_factory=dict)
    stopped_early: bool = False
    data: dict[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


def use_threads(threads: int | None) -> None:
    """Run torch's intra-op work and Numba's CPU kernels on ``threads`` threads (None leaves
    both at their defaults, one per core). Numba cannot go above the thread count it started
    with (``NUMBA_NUM_THREADS``), so it gets at most that."""
    if threads is None:
        return
    import numba

    torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))


class Trainer:
    """One training run: data, model, optimizers, evaluation, checkpoints.

    With ``ranks`` it is one rank of a run on several devices: the slice tables sharded by
    torchrec (:class:`~dv365.model.sharding.ShardedModel`), each global batch split over the
    ranks, losses and predictions reduced; rank 0 prints and writes the run folder, in the
    single-device checkpoint format."""

    def __init__(self, config: TrainConfig, *, plugins: Plugins | None = None,
                 ranks: Ranks | None = None):
        self.config = config
        self.plugins = plugins or get_plugins()
        self.ranks = ranks
        self.main = ranks is None or ranks.main
        use_threads(config.threads)
        self.device = ranks.device if ranks is not None else \
            torch_device(config.device, where=config.where("device"))
        self.ir = resolve_spec(config)
        self.store = TimelineStore.open(config.data.events_path,
                                        cache_dir=config.data.cache_dir)
        item_rows = config.item_tables.model_dump()
        # Tasks are checked against the examples' declaration after loading.
        from dv365.data.validate import DatasetReader

        declared = DatasetReader(config.data.examples_path, "examples").meta.tasks
        self.tasks = build_tasks(config, dict(declared))
        examples, meta, dropped = load_examples(config.data.examples_path, self.store,
                                                [t.name for t in self.tasks], item_rows,
                                                config.grouping)
        if dropped and self.main:
            stderr.print(f"note: {dropped:,} examples of users without events left out",
                         highlight=False)
        if config.data.until is not None:
            examples = before(examples, config.data.until, where=config.where("data.until"))
        key = config.data.validation_key
        self.train_set, held_out = split_by_time(examples, where=config.where(f"data.{key}"),
                                                 **{key: getattr(config.data, key)})
        self.eval_set = head(held_out, config.data.max_eval_examples)
        self.data_report, self.data_lines, self.warnings = self._examine_examples()
        self.item_features = tuple(f for f in item_features(meta, item_rows)
                                   if f.name in config.item_features)
        self.inputs = ModelInputs(self.tasks, self.item_features, self.train_set.dense.shape[1])
        self.model = build_model(config, self.ir, self.inputs, self.plugins)
        if ranks is None:  # DMP places the shards and the data-parallel part
            self.model.to(self.device)
        if self.train_set.dense.shape[1]:
            mean = self.train_set.dense.mean(0)
            std = self.train_set.dense.std(0)
            self.model.dense_mean.copy_(torch.from_numpy(mean))
            self.model.dense_std.copy_(torch.from_numpy(np.where(std > 0, std, 1.0)))
        self.model.task_bias.data.copy_(torch.from_numpy(
            initial_task_bias(self.train_set.labels, self.tasks)))
        self.sharded = None
        self.module: torch.nn.Module = self.model  # what a step calls
        if ranks is not None:
            from dv365.model.sharding import ShardedModel

            self.sharded = ShardedModel(self.model, config, self.ir, ranks)
            self.module = self.sharded.module
            self.optimizers = self.sharded.optimizers
        else:
            self.optimizers = build_optimizers(self.model, config.optimizer.sparse,
                                               config.optimizer.dense)
        self.run_dir = Path(config.out)
        self._epoch_batches: tuple[int, list[np.ndarray]] | None = None
        # Packing whole groups makes the batch count of an epoch depend on its order.
        self.total_steps = config.steps or sum(len(self._batches_of_epoch(e))
                                               for e in range(config.epochs))
        self.schedulers = build_schedulers(self.optimizers, config.optimizer.dense,
                                           self.total_steps)
        self.epoch, self.position = 0, 0
        self.eval_predictions: np.ndarray | None = None  # set by evaluate()
        # The evaluation with the lowest held-out loss so far, and evaluations since it.
        self.best_step: int | None = None
        self.best_loss = math.inf
        self.best_metrics: dict[str, float] = {}
        self.evals_since_best = 0
        self._recorded = False  # whether this run wrote a checkpoint or a metrics record

    # ------------------------------------------------------------------------ the data
    def _examine_examples(self) -> tuple[dict[str, float], list[str], list[str]]:
        """What the examples let the run see and tell: the shares of examples without
        history at the gap, the held-out users, NE's expected standard error per binary task
        (from the labels); the line that reports them and the warnings."""
        gap = self.ir.gap_ms
        sets = {"train": self.train_set, "eval": self.eval_set}
        report: dict[str, float] = {
            f"{name}/empty_history": empty_share(self.store, ex.user_index,
                                                         ex.history_ts, gap)
            for name, ex in sets.items()}
        line = (f"history: {report['train/empty_history']:.1%} of {len(self.train_set):,} "
                f"training and {report['eval/empty_history']:.1%} of {len(self.eval_set):,} "
                f"held-out examples see no event before request - {duration_text(gap)} "
                f"(grouping: {self.config.grouping}")
        if self.config.grouping != "request":
            exact = [empty_share(self.store, ex.user_index, ex.request_ts, gap)
                     for ex in sets.values()]
            line += f"; per request: {exact[0]:.1%} and {exact[1]:.1%}"
        lines = [line + ")"]
        held = self.eval_set
        users = len(np.unique(held.user_index))
        report["eval/users"] = float(users)
        noisy: list[str] = []
        for k, task in enumerate(self.tasks):
            if task.kind != "binary":
                continue
            error = expected_ne_standard_error(held.labels[:, k], held.user_index)
            report[f"{task.name}/expected_ne_se"] = error
            if not error <= NE_RESOLUTION:  # NaN too: one label value, no NE at all
                positives = int(held.labels[:, k].sum())
                rare = min(positives, len(held) - positives)
                noun = ("positive" if positives <= len(held) - positives else "negative") + \
                    "s" * (rare != 1)
                noisy.append(f"{task.name} {error:.3g} ({rare:,} {noun})")
        warnings = []
        if noisy:
            warnings.append(
                f"warning: the held-out set ({len(held):,} examples of {users:,} users) is too "
                f"small to tell a {NE_RESOLUTION:.0%} NE difference; NE's expected standard "
                f"error: {', '.join(noisy)} (docs/model.md, \"The held-out split\")")
        return report, lines, warnings

    # ------------------------------------------------------------------------ batches
    def _batches_of_epoch(self, epoch: int) -> list[np.ndarray]:
        if self._epoch_batches is None or self._epoch_batches[0] != epoch:
            rng = np.random.default_rng([self.config.seed, epoch])
            self._epoch_batches = (epoch, group_batches(self.train_set, self.config.batch_size,
                                                        rng))
        return self._epoch_batches[1]

    def _locate(self, step: int) -> tuple[int, int]:
        """(epoch, batch position) of the ``step``-th batch of the run."""
        epoch = 0
        while step >= len(self._batches_of_epoch(epoch)):
            step -= len(self._batches_of_epoch(epoch))
            epoch += 1
        return epoch, step

    def _next_batch(self) -> np.ndarray:
        batches = self._batches_of_epoch(self.epoch)
        if self.position >= len(batches):
            self.epoch, self.position = self.epoch + 1, 0
            batches = self._batches_of_epoch(self.epoch)
        rows = batches[self.position]
        self.position += 1
        return rows

    def _epoch_float(self) -> float:
        return self.epoch + self.position / max(len(self._batches_of_epoch(self.epoch)), 1)

    def _inputs(self, examples: Examples, rows: np.ndarray):
        groups, group_of_example = np.unique(examples.group[rows], return_inverse=True)
        kjt = None
        if self.model.encoder is not None and self.config.pooling == "fused":
            kjt = HistoryBatch(self.store, examples.group_user[groups],
                               examples.group_ts[groups], self.config.kernel)
        elif self.model.encoder is not None:
            from dv365.kernels.jagged import slice_jagged

            jag = slice_jagged(self.ir, self.store, examples.group_user[groups],
                               examples.group_ts[groups], backend=self.config.kernel)
            kjt = jag.kjt.to(self.device)
        dev = self.device
        sparse = {k: torch.from_numpy(v[rows]).to(dev) for k, v in examples.sparse.items()}
        dense = torch.from_numpy(examples.dense[rows]).to(dev)
        labels = torch.from_numpy(examples.labels[rows]).to(dev)
        return kjt, torch.from_numpy(group_of_example.astype(np.int64)).to(dev), sparse, \
            dense, labels

    # ------------------------------------------------------------------------ steps
    def _part(self, rows: np.ndarray) -> tuple[np.ndarray, float, bool]:
        """This rank's part of a global batch, the weight of its mean loss in the global mean
        (times the world size: gradients are averaged over the ranks), and whether its
        predictions count. A batch with fewer rows than ranks is computed whole on each."""
        if self.ranks is None:
            return rows, 1.0, True
        world = self.ranks.world
        if len(rows) < world:
            return rows, 1.0, self.ranks.main
        part = np.array_split(rows, world)[self.ranks.rank]
        return part, len(part) * world / len(rows), True

    def train_step(self, rows: np.ndarray) -> dict[str, float]:
        self.module.train()
        part, weight, _ = self._part(rows)
        kjt, group_of_example, sparse, dense, labels = self._inputs(self.train_set, part)
        outputs = self.module(kjt, group_of_example, sparse, dense)
        total, per_task = task_losses(outputs, labels, self.tasks, self.config.alpha)
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        (total * weight if weight != 1.0 else total).backward()
        for opt in self.optimizers.values():
            opt.step()
        for schedule in self.schedulers.values():
            schedule.step()
        values = torch.stack([total.detach(), *(v.detach() for v in per_task.values())])
        if self.ranks is not None:  # the global batch's mean losses
            values = values * (weight / self.ranks.world)  # on the device: NCCL reduces there
            torch.distributed.all_reduce(values, group=self.ranks.group)
        values = values.tolist()
        losses = {"total": values[0]}
        losses.update(zip(per_task, values[1:]))
        return losses

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Every applicable registered metric per task on the held-out examples."""
        self.module.eval()
        preds, labels, order, loss_sum = [], [], [], 0.0
        for batch in group_batches(self.eval_set, self.config.batch_size, None):
            rows, _, counted = self._part(batch)
            kjt, group_of_example, sparse, dense, y = self._inputs(self.eval_set, rows)
            out = self.module(kjt, group_of_example, sparse, dense)
            if not counted:
                continue
            total, _ = task_losses(out, y, self.tasks, self.config.alpha)
            loss_sum += float(total) * len(rows)
            preds.append(predictions(out, self.tasks).double().cpu().numpy())
            labels.append(y.double().cpu().numpy())
            order.append(rows)
        if self.ranks is not None:  # every rank gets every rank's predictions
            parts: list = [None] * self.ranks.world
            torch.distributed.all_gather_object(parts, (preds, labels, order, loss_sum),
                                                group=self.ranks.group)
            preds, labels, order = ([a for part in parts for a in part[k]] for k in range(3))
            loss_sum = sum(part[3] for part in parts)
        p, y, rows = np.concatenate(preds), np.concatenate(labels), np.concatenate(order)
        users = self.eval_set.user_index[rows]
        # Kept for paired comparisons between runs (bootstrap intervals over the same
        # held-out examples): predictions [n, T] in eval_set order.
        self.eval_predictions = np.empty_like(p)
        self.eval_predictions[rows] = p
        record: dict[str, float] = {"eval/examples": float(len(y)),
                                    "eval/loss": loss_sum / max(len(y), 1)}
        for k, task in enumerate(self.tasks):
            target = y[:, k]
            if task.kind == "regression" and task.log1p:
                target = np.log1p(np.maximum(target, 0.0))
            for metric in self.plugins.metrics:
                if task.kind in metric.applies_to:
                    record[f"{task.name}/{metric.name}"] = float(metric.factory(target, p[:, k]))
            if task.kind == "binary":
                record[f"{task.name}/ne_se"] = ne_standard_error(target, p[:, k], users)
        return record

    # ------------------------------------------------------------------------ run
    def _resume(self) -> int:
        """Restore the newest checkpoint of the run folder (its step; 0 when there is none)
        after checking that the same config wrote it. Writes nothing."""
        path = latest_checkpoint(self.run_dir)
        if path is None:
            return 0
        ckpt = load_checkpoint(path, spec=self.ir)
        self._check_same_config(ckpt)
        self._restore(ckpt)
        return ckpt.step

    def _check_same_config(self, ckpt: Checkpoint) -> None:
        try:
            saved = json.loads(ckpt.config_json)
        except ValueError:
            saved = None
        if not isinstance(saved, dict):
            raise DataError("a malformed checkpoint: config_json is no config",
                            where=str(ckpt.path))
        saved, current = (_without(c, RESUMABLE_KEYS + LOCATION_KEYS)
                          for c in (saved, json.loads(self.config.to_json())))
        if saved != current:
            changed = sorted(k for k in set(saved) | set(current)
                             if saved.get(k) != current.get(k))
            raise UsageError(f"{self.run_dir} holds a checkpoint of a different config "
                             f"(changed: {', '.join(changed)})", where=str(ckpt.path),
                             hint="choose another out: folder to start a new run")

    def _restore(self, ckpt: Checkpoint) -> None:
        """Weights, optimizers, schedules, random generators and the best so far of a
        checkpoint of this config; what does not fit is a :class:`DataError` naming it."""
        def malformed(what: str) -> DataError:
            return DataError(f"a malformed checkpoint: {what}", where=str(ckpt.path),
                             hint="it was not written by this run's dv365 train, or was "
                                  "changed since")

        local = dict(self.optimizers)
        if self.sharded is not None:
            problem = self.sharded.weights_problem(ckpt.model)
            if problem:
                raise malformed(f"its weights do not fit the model: {problem}")
            try:
                self.sharded.load_full_state(ckpt.model, ckpt.optimizers.get("sparse"))
            except (KeyError, TypeError, ValueError, RuntimeError) as exc:
                raise malformed(f"its sparse optimizer state does not fit: "
                                f"{type(exc).__name__}: {one_line(exc)}") from None
            local.pop("sparse", None)  # loaded above, from the single-device layout
        else:
            problem = load_weights(self.model, ckpt.model)
            if problem:
                raise malformed(f"its weights do not fit the model: {problem}")
        for name, opt in local.items():
            if name not in ckpt.optimizers:
                raise malformed(f"no {name} optimizer state")
            try:
                opt.load_state_dict(ckpt.optimizers[name])
            except (KeyError, TypeError, ValueError, RuntimeError) as exc:
                raise malformed(f"the {name} optimizer state does not fit: "
                                f"{type(exc).__name__}: {one_line(exc)}") from None
            problem = _optimizer_state_problem(opt)
            if problem:
                raise malformed(f"the {name} optimizer state does not fit: {problem}")
        for name, schedule in self.schedulers.items():
            # A schedule's state is the number of steps done: one that predates their
            # recording is at the checkpoint's step.
            state = ckpt.schedulers.get(name, {**schedule.state_dict(), "last_epoch": ckpt.step})
            try:
                schedule.load_state_dict(state)
            except (KeyError, TypeError, ValueError, RuntimeError) as exc:
                raise malformed(f"the {name} schedule state does not fit: "
                                f"{type(exc).__name__}: {one_line(exc)}") from None
        try:
            self._restore_rng_states(ckpt.rng_states)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise malformed(f"a random generator state does not fit: {one_line(exc)}"
                            ) from None
        extra = ckpt.extra
        try:
            best = extra.get("best_step")
            if best is not None:
                self.best_step, self.best_loss = int(best), float(extra["best_loss"])
                self.best_metrics = dict(json.loads(extra["best_metrics_json"]))
            self.evals_since_best = int(extra.get("evals_since_best", 0))
        except (KeyError, TypeError, ValueError) as exc:
            raise malformed(f"its best-so-far record is incomplete: {type(exc).__name__}: "
                            f"{one_line(exc)}") from None

    def _rng_states(self) -> dict[str, torch.Tensor]:
        """The states of the random generators training draws from (dropout): torch's CPU
        generator and, on a GPU, that device's. The batch order needs none: each epoch's is
        drawn afresh from ``(seed, epoch)``."""
        states = {"torch_cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            states["torch_cuda"] = torch.cuda.get_rng_state(self.device)
        return states

    def _restore_rng_states(self, states: dict[str, torch.Tensor]) -> None:
        # A checkpoint written before they were recorded leaves the generators as built.
        if "torch_cpu" in states:
            torch.set_rng_state(states["torch_cpu"])
        if self.device.type == "cuda" and "torch_cuda" in states:
            torch.cuda.set_rng_state(states["torch_cuda"], self.device)

    def _checkpoint(self, step: int, *, best: bool = False) -> None:
        extra: dict[str, Any] = {"evals_since_best": self.evals_since_best}
        if self.best_step is not None:
            extra.update(best_step=self.best_step, best_loss=self.best_loss,
                         best_metrics_json=json.dumps(self.best_metrics))
        model, optimizers = self.model, self.optimizers
        if self.sharded is not None:  # gathered on rank 0, in the single-device layout
            full = self.sharded.full_state(step)
            self._recorded = True
            if full is None:
                return
            model = _Saved(full[0])
            optimizers = {**optimizers, "sparse": _Saved(full[1])}
            if not self.sharded.sparse_names:
                optimizers.pop("sparse")
        save_checkpoint(self.run_dir, step=step, epoch=self.epoch,
                        spec=self.ir, config_json=self.config.to_json(),
                        model_inputs_json=self.inputs.to_json(), model=model,
                        optimizers=optimizers, schedulers=self.schedulers, extra=extra,
                        rng_states=self._rng_states(), best=best)
        self._recorded = True

    def _track_best(self, step: int, record: dict[str, float]) -> None:
        """Keep ``best.pt`` at the lowest held-out loss; count evaluations since it."""
        loss = record["eval/loss"]
        if loss < self.best_loss:
            self.best_step, self.best_loss, self.best_metrics = step, loss, dict(record)
            self.evals_since_best = 0
            self._checkpoint(step, best=True)
        else:
            self.evals_since_best += 1

    def _patience_spent(self) -> bool:
        stopping = self.config.early_stopping
        return stopping is not None and self.evals_since_best >= stopping.patience

    def _log(self, record: dict[str, Any]) -> None:
        self._recorded = True
        if not self.main:
            return
        with open(self.run_dir / METRICS_FILE, "a") as f:
            # Undefined metrics (a task without positives in the split) are null, not NaN:
            # the file stays strict JSON.
            clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                     for k, v in record.items()}
            f.write(json.dumps(clean) + "\n")
        self._recorded = True

    def _open_run_dir(self, start: int) -> None:
        """Create the run folder (once the start is known to be good) with the config and
        spec it trains, written atomically, and drop the metrics records after ``start``."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_text(self.run_dir / "config.json", self.config.model_dump_json(indent=2))
        write_text(self.run_dir / "spec.json", self.ir.to_json())
        path = self.run_dir / METRICS_FILE
        if path.exists():
            lines = path.read_bytes().decode("utf-8", "replace").splitlines()
            # A line a kill cut short is no record either.
            kept = [line for line in lines if (at := _record_step(line)) is not None
                    and at <= start]
            if kept != lines:
                write_text(path, "".join(line + "\n" for line in kept))

    def _forget_run_dir(self) -> None:
        """Undo :meth:`_open_run_dir` for a new run that failed before its first record: its
        two files, and the folder when nothing else is in it."""
        for name in ("config.json", "spec.json"):
            (self.run_dir / name).unlink(missing_ok=True)
        try:
            self.run_dir.rmdir()
        except OSError:  # something else was put there (a plugin's file): keep it
            pass

    def run(self) -> TrainResult:
        """Train from the newest checkpoint of the run folder (or from the start) to the last
        step, evaluating, checkpointing and recording as configured."""
        new = not self.run_dir.exists()
        start = self._resume()
        self.epoch, self.position = self._locate(start)
        for line in (self.data_lines + self.warnings) * self.main:
            stderr.print(line, highlight=False, markup=False, soft_wrap=True)
        try:
            if self.main:
                self._open_run_dir(start)
            return self._train_from(start)
        except BaseException:
            if new and not self._recorded:
                self._forget_run_dir()
            raise

    def _train_from(self, start: int) -> TrainResult:
        hook = self.plugins.hook
        step, seen, train_time = start, 0, 0.0
        recent: list[float] = []
        metrics: dict[str, float] = {}
        stopped = self._patience_spent()
        bar = progress("training", total=self.total_steps) if self.main else \
            contextlib.nullcontext(lambda n=1: None)
        with bar as advance:
            advance(start)
            while step < self.total_steps and not stopped:
                rows = self._next_batch()
                t0 = time.perf_counter()
                losses = self.train_step(rows)
                train_time += time.perf_counter() - t0
                if not math.isfinite(losses["total"]):
                    raise UsageError(f"the loss became {losses['total']} at step {step + 1}",
                                     hint="lower optimizer learning rates")
                step += 1
                seen += len(rows)
                recent.append(losses["total"])
                if self.main:
                    hook.dv365_on_train_step(step=step, losses=losses,
                                             run_dir=str(self.run_dir))
                advance(1)
                last = step == self.total_steps
                if step % self.config.eval_every == 0 or last:
                    metrics = self._eval_record(step, recent, seen, train_time)
                    recent = []
                    self._track_best(step, metrics)
                    stopped = self._patience_spent()
                if step % self.config.checkpoint_every == 0 or last or stopped:
                    self._checkpoint(step)
        if step == start:  # nothing trained: report what is there, record nothing new
            metrics = self._eval_record(step, recent, seen, train_time, log=False)
        if stopped and step < self.total_steps and self.main:
            stderr.print(f"stopped early at step {step}: no lower held-out loss in "
                         f"{self.evals_since_best} evaluations since step {self.best_step}",
                         highlight=False, markup=False, soft_wrap=True)
        return TrainResult(self.run_dir, step, metrics, seen / max(train_time, 1e-9), start,
                           self.best_step, dict(self.best_metrics),
                           stopped and step < self.total_steps, dict(self.data_report),
                           tuple(self.warnings))

    def _eval_record(self, step: int, recent: list[float], seen: int, train_time: float, *,
                     log: bool = True) -> dict[str, float]:
        """Evaluate; with ``log``, append the record to ``metrics.jsonl`` and tell the
        ``dv365_on_eval`` observers."""
        record: dict[str, Any] = {"step": step, "epoch": round(self._epoch_float(), 4),
                                  "time": time.time()}
        if recent:
            record["train/loss"] = float(np.mean(recent))
        if seen:
            record["train/samples_per_s"] = seen / max(train_time, 1e-9)
        if "dense" in self.optimizers:
            record["train/lr"] = self.optimizers["dense"].param_groups[0]["lr"]
        record.update(self.evaluate())
        record.update(self.data_report)
        if log:
            self._log(record)
        if log and self.main:
            self.plugins.hook.dv365_on_eval(step=step, metrics=record,
                                            run_dir=str(self.run_dir))
        return record


def _without(config: dict, keys: tuple[str, ...]) -> dict:
    """``config`` without the (dotted) ``keys``."""
    out = dict(config)
    for key in keys:
        head, _, rest = key.partition(".")
        if rest and isinstance(out.get(head), dict):
            out[head] = _without(out[head], (rest,))
        elif not rest:
            out.pop(head, None)
    return out


def _record_step(line: str) -> int | None:
    """The step of one line of ``metrics.jsonl`` (None for a line that is no record)."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    step = record.get("step") if isinstance(record, dict) else None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def _optimizer_state_problem(opt: torch.optim.Optimizer) -> str | None:
    """A loaded optimizer state tensor whose shape fits neither its parameter nor one value
    per row (row-wise Adagrad), in a few words; None when all fit."""
    for group in opt.param_groups:
        for p in group["params"]:
            for key, value in opt.state.get(p, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() and \
                        value.shape not in (p.shape, p.shape[:1]):
                    return (f"{key} has shape {tuple(value.shape)}, its parameter "
                            f"{tuple(p.shape)}")
    return None


@dataclass(frozen=True)
class _Saved:
    """A gathered state in the place of a module or optimizer: what a checkpoint stores."""

    state: dict[str, Any]

    def state_dict(self) -> dict[str, Any]:
        return self.state


def several_devices_config(config: TrainConfig, world: int) -> TrainConfig:
    """The config of one rank of a ``torchrun`` launch of ``world`` processes: ``devices``
    one per process (its GPUs, or the CPU), validated again (so ``pooling: fused`` or
    ``row_wise`` on the CPU are refused at their keys, as with ``devices:``)."""
    from dv365.model.config import validated

    if config.devices is not None and len(config.devices) > 1:
        return config
    raw = config.model_dump(mode="json", exclude_unset=True)
    kind = config.device.split(":")[0]
    raw["devices"] = [f"cuda:{i}" for i in range(world)] if kind == "cuda" else ["cpu"] * world
    raw.pop("device", None)
    derived = validated(TrainConfig, raw, config._file)
    derived._file = config._file
    return derived


def train_on_rank(config: TrainConfig, ranks: Ranks) -> TrainResult:
    """One rank's part of a run on several devices (what each spawned process runs)."""
    return Trainer(config, ranks=ranks).run()


def train(config: TrainConfig, *, plugins: Plugins | None = None) -> TrainResult:
    """Train (or resume) the run a config describes: in this process on one device; in one
    process per device when it lists several (:func:`dv365.model.ranks.run_on_ranks`); as
    one rank of a ``torchrun`` launch when this process is one (rank 0 returns the result,
    the others theirs). The spawned processes import the caller's main module again: a script
    that trains on several devices calls this under ``if __name__ == "__main__":``."""
    world = torchrun_world()
    if world > 1:
        config = several_devices_config(config, world)
        ranks = torchrun_ranks(config.devices, config.device)
        return Trainer(config, plugins=plugins, ranks=ranks).run()
    if config.devices is not None and len(config.devices) > 1:
        for device in config.devices:  # told now, not by every rank after its start-up
            torch_device(device, where=config.where("devices"),
                         hint="devices: [cpu, cpu] trains on this machine's cores")
        # Built once here, the timeline store's cache is only read by the ranks.
        TimelineStore.open(config.data.events_path, cache_dir=config.data.cache_dir)
        return run_on_ranks(functools.partial(train_on_rank, config), config.devices,
                            threads=config.threads)
    return Trainer(config, plugins=plugins).run()
