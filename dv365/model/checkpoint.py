"""Checkpoints: weights, optimizer state, the config and the spec they were trained with.

A checkpoint is one ``torch.save`` file ``<run>/checkpoints/step-<step>.pt`` holding only
tensors, numbers and strings, so it loads with ``torch.load(weights_only=True)`` (no pickled
code runs). It records the compiled spec's IR (JSON) and its content hash: a checkpoint is
refused for a spec whose hash differs, since its table rows and slice order would mean
something else. Files are written to a temporary name and renamed (an interrupted save leaves
the previous checkpoint intact); the newest ``keep`` are kept.

``<run>/checkpoints/best.pt`` (:data:`BEST`, :func:`best_checkpoint`) is the same kind of file
for the step with the lowest held-out loss so far; it is kept apart from the rolling ones (no
pruning touches it, resuming never reads it) and replaced atomically when a later evaluation
beats it. The learning-rate schedulers' state (``schedulers``) is stored next to the
optimizers'; checkpoints written before it was recorded load with none.

Format version 2 adds ``model_inputs_json``: what the model was built from besides the config
and the spec (the tasks, the item features and their table rows, the number of dense
features; see :class:`dv365.model.foundation.ModelInputs`), so that the model can be rebuilt
without the examples dataset. Version-1 checkpoints still load (a run resumes from them) with
``model_inputs_json`` None; rebuilding from one is refused.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dv365.atomic_write import atomic_path
from dv365.errors import ConfigError, DataError
from dv365.slices.ir import SpecIR

FORMAT = "dv365-checkpoint"
VERSION = 2
READABLE_VERSIONS = (1, 2)
_NAME = re.compile(r"^step-(\d+)\.pt$")
BEST = "best.pt"


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint file holds."""

    path: Path
    step: int
    epoch: int
    spec_hash: str
    spec_json: str
    config_json: str
    model: dict[str, torch.Tensor]
    optimizers: dict[str, Any]
    extra: dict[str, Any]
    # None in a version-1 checkpoint, which predates it.
    model_inputs_json: str | None = None
    version: int = VERSION
    schedulers: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> SpecIR:
        return SpecIR.from_json(self.spec_json)


def checkpoint_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / "checkpoints"


def save_checkpoint(run_dir: str | os.PathLike, *, step: int, epoch: int, spec: SpecIR,
                    config_json: str, model_inputs_json: str, model: torch.nn.Module,
                    optimizers: dict[str, torch.optim.Optimizer],
                    schedulers: dict[str, Any] | None = None,
                    extra: dict[str, Any] | None = None, keep: int = 2,
                    best: bool = False) -> Path:
    """Write ``step-<step>.pt`` atomically and drop all but the newest ``keep``; with
    ``best``, write (or replace) ``best.pt`` instead and drop nothing."""
    folder = checkpoint_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (BEST if best else f"step-{step:09d}.pt")
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "step": int(step),
        "epoch": int(epoch),
        "spec_hash": spec.content_hash(),
        "spec_json": spec.model_dump_json(),
        "config_json": config_json,
        "model_inputs_json": model_inputs_json,
        "model": model.state_dict(),
        "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
        "schedulers": {name: s.state_dict() for name, s in (schedulers or {}).items()},
        "extra": dict(extra or {}),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    if not best:
        for old in list_checkpoints(run_dir)[:-keep]:
            old.unlink(missing_ok=True)
    return path


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """The run's checkpoint files, oldest first."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest checkpoint of a run, or None."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def best_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The run's checkpoint with the lowest held-out loss (``best.pt``), or None."""
    path = checkpoint_dir(run_dir) / BEST
    return path if path.is_file() else None


def load_checkpoint(path: str | os.PathLike, *, spec: SpecIR | None = None) -> Checkpoint:
    """Load safely (``weights_only``); refuse it when ``spec``'s content hash differs."""
    path = Path(path)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError("no such checkpoint", where=str(path)) from None
    except Exception as exc:  # not a torch file, or one holding pickled objects
        raise DataError(f"not a loadable dv365 checkpoint: {type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''}",
                        where=str(path)) from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise DataError("not a dv365 checkpoint", where=str(path))
    if raw.get("version") not in READABLE_VERSIONS:
        raise DataError(f"checkpoint format version {raw.get('version')}, this dv365 reads "
                        f"{', '.join(map(str, READABLE_VERSIONS))}", where=str(path))
    if spec is not None and raw["spec_hash"] != spec.content_hash():
        raise ConfigError(
            f"the checkpoint was trained with spec {raw['spec_hash'][:12]}, the given spec is "
            f"{spec.content_hash()[:12]}", where=str(path),
            hint="tables and slice order would not match; use the spec it was trained with")
    return Checkpoint(path, raw["step"], raw["epoch"], raw["spec_hash"], raw["spec_json"],
                      raw["config_json"], raw["model"], raw["optimizers"], raw["extra"],
                      raw.get("model_inputs_json"), raw["version"], raw.get("schedulers", {}))
