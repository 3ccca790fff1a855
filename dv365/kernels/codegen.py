"""Kernel plan -> readable Numba source, written to a cache file and imported.

The generated module is plain Python: one block per event that evaluates each distinct
expression and leaf once (``e3 = e1 / e2``, ``l4 = e3 > 0.5``), each slot predicate
(``p2 = l0 and l4``), then per table one row lookup guarded by ``p0 or p2 or ...`` and one
accumulation per selecting slot. It is logged at debug level (logger ``dv365.kernels``) and
written to ``$DV365_CACHE_DIR`` (default ``~/.cache/dv365/kernels``) as
``dv365_kernel_<tag>_<source digest>.py`` so that Numba's ``cache=True`` can keep the
machine code between processes; in process, imported modules are kept by their tag in
:data:`dv365.kernels.cache.CACHES` (``modules``).

The tag names everything the source depends on: the plan's key, the backend and its
variant (CPU parallel or serial, CUDA on a GPU or in the simulator), the table element kind
and, on CUDA, the :class:`~dv365.kernels.cuda_tuning.CudaTuning`. The generators live
beside this module: :mod:`dv365.kernels.source` (pieces both use),
:mod:`dv365.kernels.cpu_source` and :mod:`dv365.kernels.cuda_source`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import sys
from pathlib import Path
from types import ModuleType

from dv365.atomic_write import write_text
from dv365.kernels import cpu_source, cuda_source
from dv365.kernels.cache import CACHES
from dv365.kernels.cuda_layout import CudaLayout, cuda_layout
from dv365.kernels.cuda_tuning import DEFAULT_TUNING, CudaTuning
from dv365.kernels.plan import KernelPlan

log = logging.getLogger("dv365.kernels")


def cache_dir() -> Path:
    """Where generated kernel modules (and Numba's cache next to them) live."""
    root = os.environ.get("DV365_CACHE_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "dv365"
    return base / "kernels"


def serial_cpu() -> bool:
    """``DV365_KERNEL_SERIAL=1`` compiles CPU kernels without ``parallel=True``.

    Same source with ``range`` for ``prange``; it compiles about 4x faster, which is what
    tests over many random specs need. Production paths leave it unset.
    """
    return os.environ.get("DV365_KERNEL_SERIAL", "") not in ("", "0")


def layout_for(plan: KernelPlan, tuning: CudaTuning = DEFAULT_TUNING) -> CudaLayout:
    """The CUDA layout of ``plan`` under ``tuning`` (memoized)."""
    return CACHES.layouts.get_or_make((plan.key(), tuning), lambda: cuda_layout(plan, tuning))


def generate(plan: KernelPlan, backend: str, elem: str = "f32", *, simulator: bool = False,
             tuning: CudaTuning = DEFAULT_TUNING) -> str:
    """The kernel module's source for ``backend`` ("cpu" or "cuda") and table element kind."""
    if backend == "cpu":
        source = cpu_source.generate(plan, elem)
        if serial_cpu():
            source = source.replace("parallel=True", "parallel=False").replace(
                "in prange(", "in range(")
        return source
    if backend == "cuda":
        return cuda_source.generate(layout_for(plan, tuning), elem, simulator)
    raise ValueError(f"no code generator for backend {backend!r}")


def module_tag(plan: KernelPlan, backend: str, elem: str, *, simulator: bool = False,
               tuning: CudaTuning = DEFAULT_TUNING) -> str:
    """What the generated module depends on, as one name (its in-process cache key)."""
    if backend == "cuda":
        variant = f"{'sim' if simulator else 'gpu'}_{tuning.key()}"
    else:
        variant = "serial" if serial_cpu() else "parallel"
    return f"{plan.key()}_{backend}_{variant}_{elem}"


def load(plan: KernelPlan, backend: str, elem: str = "f32", *, simulator: bool = False,
         tuning: CudaTuning = DEFAULT_TUNING) -> ModuleType:
    """Generate (or reuse) and import the kernel module of ``plan`` for ``backend``."""
    tag = module_tag(plan, backend, elem, simulator=simulator, tuning=tuning)
    return CACHES.modules.get_or_make(
        tag, lambda: _import(tag, generate(plan, backend, elem, simulator=simulator,
                                           tuning=tuning), plan, backend))


def _import(tag: str, source: str, plan: KernelPlan, backend: str) -> ModuleType:
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    name = f"dv365_kernel_{tag}_{digest}"
    log.debug("generated %s kernels for plan %s (%s):\n%s", backend, plan.key(),
              plan.summary(), source)
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    if not path.exists() or path.read_text() != source:
        write_text(path, source)  # a concurrent process never imports half a file
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
