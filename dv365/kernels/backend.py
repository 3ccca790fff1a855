"""Which implementation runs a slice kernel.

:class:`Backend` picks one of three implementations of the same semantics: ``reference``
(the NumPy oracle, :mod:`dv365.slices.reference`), ``cpu`` (generated Numba, parallel over
batch rows; :mod:`dv365.kernels.cpu_launch`) and ``cuda`` (generated Numba CUDA, on a GPU or
in Numba's simulator; :mod:`dv365.kernels.cuda_launch`).
"""

from __future__ import annotations

import enum

from dv365.errors import DataError


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
