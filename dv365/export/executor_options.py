"""The executor an export's options ask for (``dv365 export --ray/--workers/--devices``, a
pipeline's ``export:`` keys), checked before any data is read: one of the
:class:`~dv365.export.parallel.Executor` implementations, or ``None`` for the export in its
own process."""

from __future__ import annotations

from typing import Callable, Sequence

from dv365.errors import UsageError
from dv365.export.process_executor import ProcessExecutor
from dv365.export.ray_executor import RayExecutor, import_ray


def executor_for(*, ray: str | None = None, workers: int = 1,
                 devices: Sequence[str] | None = None, device: str = "cpu",
                 gpus_per_worker: float | None = None, cpus_per_worker: float = 1.0,
                 where: Callable[[str], str] = lambda option: f"--{option}"):
    """The executor ``dv365 export``'s options (or a pipeline's ``export:`` keys) ask for;
    ``None`` for the single-process export. ``where(option)`` names an option in an error
    (``--gpus-per-worker`` by default)."""
    if ray is not None:
        if devices is not None:
            raise UsageError("devices pick processes of this host; Ray places its workers "
                             "itself", where=where("devices"),
                             hint="with Ray give workers and GPUs per worker instead")
        import_ray(where("ray"))  # a missing extra is one line before any data is read
        gpus = gpus_per_worker if gpus_per_worker is not None else (
            1.0 if device == "cuda" else 0.0)
        return RayExecutor(ray, workers=workers, gpus_per_worker=gpus,
                           cpus_per_worker=cpus_per_worker, where=where("ray"))
    if gpus_per_worker is not None:
        raise UsageError("GPUs per worker are for Ray workers", where=where("gpus-per-worker"),
                         hint="ask for Ray, or list the GPUs as devices")
    if devices is not None:
        names = [d.strip() for d in devices if d.strip()]
        if workers not in (1, len(names)):
            raise UsageError(f"{workers} workers but {len(names)} devices",
                             where=where("workers"),
                             hint="devices alone give one worker per device")
        option = "devices"
    elif workers > 1:
        names = ["cpu"] * workers if device == "cpu" else [f"cuda:{n}" for n in range(workers)]
        option = "device"
    else:
        return None
    return ProcessExecutor(names, where=where(option))
