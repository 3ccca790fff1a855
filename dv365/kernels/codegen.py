"""Kernel plan -> readable Numba source, written to a cache file and imported.

The generated module is plain Python: one block per event that evaluates each distinct
expression and leaf once (``e3 = e1 / e2``, ``l4 = e3 > 0.5``), each slot predicate
(``p2 = l0 and l4``), then per table one row lookup guarded by ``p0 or p2 or ...`` and one
accumulation per selecting slot. It is logged at debug level (logger ``dv365.kernels``) and
written to ``$DV365_CACHE_DIR`` (default ``~/.cache/dv365/kernels``) as
``<plan key>_<backend>_<elem>.py`` so that Numba's ``cache=True`` can keep the machine code
between processes; the source is memoized in-process by the same key.

The generators live beside this module: :mod:`dv365.kernels.source` (pieces both use),
:mod:`dv365.kernels.cpu_source` and :mod:`dv365.kernels.cuda_source`. Table elements are read
as ``f32`` (fp32 tables), as uint16 through a lookup table on CPU (fp16, bf16), or natively on
CUDA (fp16 as ``float16``; bf16 as uint16 bits shifted into a float32).
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
from dv365.kernels.cuda_source import CUDA_CHUNK_FUSED
from dv365.kernels.plan import KernelPlan
from dv365.kernels.source import POOL_CODES, row_functions

__all__ = ["CUDA_CHUNK_FUSED", "POOL_CODES", "cache_dir", "generate", "load",
           "row_functions", "serial_cpu"]

log = logging.getLogger("dv365.kernels")


def cache_dir() -> Path:
    """Where generated kernel modules (and Numba's cache next to them) live."""
    root = os.environ.get("DV365_CACHE_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "dv365"
    return base / "kernels"


_MODULES: dict[str, ModuleType] = {}


def serial_cpu() -> bool:
    """``DV365_KERNEL_SERIAL=1`` compiles CPU kernels without ``parallel=True``.

    Same source with ``range`` for ``prange``; it compiles about 4x faster, which is what
    tests over many random specs need. Production paths leave it unset.
    """
    return os.environ.get("DV365_KERNEL_SERIAL", "") not in ("", "0")


def generate(plan: KernelPlan, backend: str, elem: str = "f32", *, simulator: bool = False
             ) -> str:
    """The kernel module's source for ``backend`` ("cpu" or "cuda") and table element kind."""
    if backend == "cpu":
        source = cpu_source.generate(plan, elem)
        if serial_cpu():
            source = source.replace("parallel=True", "parallel=False").replace(
                "in prange(", "in range(")
        return source
    if backend == "cuda":
        return cuda_source.generate(plan, elem, simulator)
    raise ValueError(f"no code generator for backend {backend!r}")


def load(plan: KernelPlan, backend: str, elem: str = "f32", *, simulator: bool = False
         ) -> ModuleType:
    """Generate (or reuse) and import the kernel module of ``plan`` for ``backend``."""
    variant = "sim" if simulator else ("serial" if backend == "cpu" and serial_cpu() else "")
    tag = f"{plan.key()}_{backend}{variant}_{elem}"
    module = _MODULES.get(tag)
    if module is not None:
        return module
    source = generate(plan, backend, elem, simulator=simulator)
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
    _MODULES[tag] = module
    return module
