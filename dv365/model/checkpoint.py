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

``rng_states`` holds the states of the random generators the run draws from (dropout), so that
a resumed run draws what an uninterrupted one would; checkpoints written before it was recorded
load with none. Loading checks the file's structure (every key there, of its type; the step a
count; the weights tensors; the stored spec matching its hash): anything else is a one-line
:class:`~dv365.errors.DataError` naming the file, never a ``KeyError`` later.
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
    # Empty in a checkpoint written before they were recorded.
    rng_states: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def spec(self) -> SpecIR:
        return SpecIR.from_json(self.spec_json)


def checkpoint_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / "checkpoints"


def save_checkpoint(run_dir: str | os.PathLike, *, step: int, epoch: int, spec: SpecIR,
                    config_json: str, model_inputs_json: str, model: torch.nn.Module,
                    optimizers: dict[str, torch.optim.Optimizer],
                    schedulers: dict[str, Any] | None = None,
                    extra: dict[str, Any] | None = None,
                    rng_states: dict[str, torch.Tensor] | None = None, keep: int = 2,
                    best: bool = False) -> Path:
    """Write ``step-<step>.pt`` atomically and drop all but the newest ``keep``; with
    ``best``, write (or replace) ``best.pt`` instead and drop nothing. ``rng_states`` are the
    run's random generators' states (``torch.get_rng_state()`` and the like)."""
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
        "rng_states": dict(rng_states or {}),
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
    """Load safely (``weights_only``) and check its structure (a :class:`DataError` naming
    the file otherwise); refuse it when ``spec``'s content hash differs."""
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
    problem = _structure_problem(raw)
    if problem:
        raise DataError(f"a malformed checkpoint: {problem}", where=str(path),
                        hint="it was not written by dv365 train, or was changed since")
    if spec is not None and raw["spec_hash"] != spec.content_hash():
        raise ConfigError(
            f"the checkpoint was trained with spec {raw['spec_hash'][:12]}, the given spec is "
            f"{spec.content_hash()[:12]}", where=str(path),
            hint="tables and slice order would not match; use the spec it was trained with")
    return Checkpoint(path, raw["step"], raw["epoch"], raw["spec_hash"], raw["spec_json"],
                      raw["config_json"], raw["model"], raw["optimizers"], raw["extra"],
                      raw.get("model_inputs_json"), raw["version"], raw.get("schedulers", {}),
                      raw.get("rng_states", {}))


# What every checkpoint holds, by type; version-1 ones lack model_inputs_json, and the
# schedulers and random generators came later (None: absent).
_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "step": int, "epoch": int, "spec_hash": str, "spec_json": str, "config_json": str,
    "model": dict, "optimizers": dict, "extra": dict}
_OPTIONAL: dict[str, type | tuple[type, ...]] = {
    "model_inputs_json": (str, type(None)), "schedulers": dict, "rng_states": dict}
_TYPE_NAMES = {int: "a whole number", str: "a string", dict: "a mapping"}


def _structure_problem(raw: dict) -> str | None:
    """What is wrong with a loaded checkpoint's layout, in a few words (None: nothing)."""
    missing = [key for key in _REQUIRED if key not in raw]
    if missing:
        return f"no {', '.join(missing)}"
    for key, kind in {**_REQUIRED, **_OPTIONAL}.items():
        if key not in raw:
            continue
        value = raw[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            wanted = _TYPE_NAMES.get(kind, "a string or null")  # type: ignore[arg-type]
            return f"{key} is {_shown(value)}, not {wanted}"
    for key in ("step", "epoch"):
        if raw[key] < 0:
            return f"{key} is {raw[key]}, not a count (0 or more)"
    for section in ("model", "rng_states"):
        for name, value in raw.get(section, {}).items():
            if not isinstance(value, torch.Tensor):
                return f"{section}[{name!r}] is {_shown(value)}, not a tensor"
    for section in ("optimizers", "schedulers"):
        for name, value in raw.get(section, {}).items():
            if not isinstance(value, dict):
                return f"{section}[{name!r}] is {_shown(value)}, not a mapping"
    try:
        stored = SpecIR.from_json(raw["spec_json"])
    except Exception as exc:  # pydantic's or json's error: the stored spec is no IR
        return f"spec_json is no compiled spec: {type(exc).__name__}"
    if stored.content_hash() != raw["spec_hash"]:
        return "spec_json does not hash to spec_hash"
    return None


def _shown(value: Any) -> str:
    """A value in an error message: short, one line."""
    text = repr(value) if isinstance(value, (int, float, str, type(None))) else \
        f"a {type(value).__name__}"
    return text if len(text) <= 40 else text[:37] + "..."
