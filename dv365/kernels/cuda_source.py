"""The CUDA generator: a kernel plan as one module of ``numba.cuda.jit`` kernels.

Each kernel does one thing with the access pattern a GPU wants:

* ``bounds`` (a thread per batch row): the row's band starts ``starts[b, 0..K]``;
* ``mark`` and ``mark_entries`` (a thread per event; :mod:`dv365.kernels.cuda_mark`): every
  predicate once per event, written as what the later kernels read;
* ``fused_entries`` (:mod:`dv365.kernels.cuda_fused`): the fused pooled output;
* ``tally`` and ``fill`` (:mod:`dv365.kernels.cuda_jagged`): the jagged output.

Everything shape-like is read from one :class:`~dv365.kernels.cuda_layout.CudaLayout`.
Arrays the hot kernels index are flat with strides fixed at generation time (tables packed
into one buffer at known row offsets, ``out`` as ``[B * S * D]``): with a 2-D argument per
table and one straight-line atomic per slice, a kernel holds every address and stride in
registers and spills.

The same source runs on a GPU and in Numba's CUDA simulator (``simulator=True`` swaps the
bf16 widening and the wrapping 64-bit hash for simulator-safe forms, and asks ptxas for
nothing).
"""

from __future__ import annotations

from dv365.kernels.cuda_fused import fused_source
from dv365.kernels.cuda_jagged import fill_source, tally_source
from dv365.kernels.cuda_layout import CudaLayout
from dv365.kernels.cuda_mark import mark_entries_source, mark_source
from dv365.kernels.source import bounds_fn, header, helpers

DEVICE_FUNCTION = "@cuda.jit(device=True, inline=True)"


def _simulator_helpers(lines: list[str]) -> list[str]:
    # The simulator multiplies NumPy uint64 scalars, which warn on the intended wrap.
    return [line.replace("def _hash_row(z, n):",
                         "def _hash_row(z, n):\n    with np.errstate(over='ignore'):\n"
                         "        return _hash_row_wrapping(z, n)\n\n\n"
                         "def _hash_row_wrapping(z, n):") for line in lines]


def generate(layout: CudaLayout, elem: str, simulator: bool) -> str:
    """The kernel module's source for ``layout``'s plan, tables of element kind ``elem``."""
    plan = layout.plan
    src = header(plan, "cuda") + ["from numba import cuda", ""]
    if simulator:
        src += ["def _bf16(x):",
                "    return np.array([np.uint32(x) << np.uint32(16)], np.uint32)"
                ".view(np.float32)[0]", ""]
        src += _simulator_helpers(helpers(DEVICE_FUNCTION))
    else:
        src += ["from numba.cuda import libdevice", "", DEVICE_FUNCTION, "def _bf16(x):",
                "    return libdevice.int_as_float(int32(x) << 16)", ""]
        src += helpers(DEVICE_FUNCTION)
    src += bounds_fn(plan, DEVICE_FUNCTION) + [""]
    src += [
        "@cuda.jit",
        "def bounds(offsets, users, request_ts, ts, starts):",
        "    b = cuda.grid(1)",
        "    if b < users.shape[0]:",
        "        _bounds(offsets, ts, users[b], request_ts[b], starts[b])",
        "",
    ]
    src += mark_source(layout, simulator)
    src += mark_entries_source(layout, simulator)
    src += tally_source(layout)
    carveout = layout.tuning.shared_carveout
    jit = ("@cuda.jit" if simulator or not carveout
           else f"@cuda.jit(shared_memory_carveout={carveout!r})")
    src += fused_source(layout, elem, jit)
    src += fill_source(layout)
    return "\n".join(src) + "\n"
