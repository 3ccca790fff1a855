"""Which implementation runs a slice kernel.

:class:`Backend` picks one of three implementations of the same semantics: ``reference``
(the NumPy oracle, :mod:`dv365.slices.reference`), ``cpu`` (generated Numba, parallel over
batch rows; :mod:`dv365.kernels.cpu_launch`) and ``cuda`` (generated Numba CUDA, on a GPU or
in Numba's simulator; :mod:`dv365.kernels.cuda_launch`); :func:`launcher_for` gives the
launcher of a compiled backend.
"""

from __future__ import annotations

import enum

from dv365.errors import ConfigError, DataError
from dv365.kernels.cuda_tuning import DEFAULT_TUNING, CudaTuning
from dv365.kernels.launch import Launcher


class Backend(str, enum.Enum):
    """Which implementation runs a slice kernel."""

    reference = "reference"
    cpu = "cpu"
    cuda = "cuda"


def resolve(backend: "Backend | str") -> Backend:
    """``backend`` as a :class:`Backend`; a :class:`DataError` naming the choices."""
    try:
        return Backend(backend)
    except ValueError:
        raise DataError(f"unknown kernel backend {backend!r}", where="backend",
                        hint="one of " + ", ".join(b.value for b in Backend)) from None


def check_available(backend: "Backend | str", *, where: str = "backend") -> Backend:
    """``backend`` (:func:`resolve`) when this machine can run it; a :class:`ConfigError`
    at ``where`` (the config key that chose it) for ``cuda`` without a GPU or the
    simulator. Imports numba.cuda only for ``cuda``."""
    chosen = resolve(backend)
    if chosen is Backend.cuda:
        from dv365.kernels.cuda_launch import available

        if not available():
            raise ConfigError("the cuda kernel backend needs an NVIDIA GPU (or "
                              "NUMBA_ENABLE_CUDASIM=1)", where=where, hint="use cpu")
    return chosen


def launcher_for(backend: Backend, tuning: CudaTuning | None = None) -> Launcher:
    """The launcher of a compiled backend (``cpu`` or ``cuda``). The CUDA launcher is
    imported only when asked for: importing numba.cuda costs seconds and wants a driver."""
    if backend is Backend.cpu:
        from dv365.kernels.cpu_launch import CpuLauncher

        return CpuLauncher()
    if backend is Backend.cuda:
        from dv365.kernels.cuda_launch import CudaLauncher

        return CudaLauncher(tuning or DEFAULT_TUNING)
    raise ValueError(f"the {backend.value} backend has no launcher")
