"""Launching the generated CUDA kernels (real GPU, or Numba's simulator on CPU).

With ``NUMBA_ENABLE_CUDASIM=1`` the same generated source runs in Numba's CUDA simulator
(plain Python threads, slow, for tests); the only difference is how bf16 bits are widened.
Store columns are copied to the device once per store object and kept there. Small
bookkeeping between kernels (summing per-chunk counts, the scan that places each chunk's
rows, the finalize division) is done with torch on the same device.
"""

from __future__ import annotations

import weakref
from typing import Any, Mapping

import numpy as np
import torch

if not hasattr(np, "row_stack"):  # numba-cuda still imports np.row_stack (gone in NumPy 2.5)
    np.row_stack = np.vstack  # type: ignore[attr-defined]

from numba import config, cuda  # noqa: E402

from dv365.errors import DataError  # noqa: E402
from dv365.kernels import codegen  # noqa: E402
from dv365.kernels.backend import bad_weight_error  # noqa: E402
from dv365.kernels.plan import KernelPlan  # noqa: E402
from dv365.slices.ir import SpecIR  # noqa: E402

THREADS = 128
# Events per thread of the jagged path's count and fill kernels: small, so that a batch has
# enough threads to keep the GPU's memory busy (each thread walks its events serially).
JAGGED_CHUNK = 32
# Benchmarks set TIMING to read where the time goes (synchronizes after each phase).
TIMING = False
TIMINGS: dict[str, float] = {}


def _phase(name: str, t0: float) -> float:
    import time

    if TIMING:
        cuda.synchronize()
        now = time.perf_counter()
        TIMINGS[name] = TIMINGS.get(name, 0.0) + now - t0
        return now
    return t0


def simulator() -> bool:
    """True when Numba's CUDA simulator stands in for a GPU."""
    return bool(config.ENABLE_CUDASIM)


def available() -> bool:
    return simulator() or cuda.is_available()


def _require() -> None:
    if not available():
        raise DataError("the cuda backend needs an NVIDIA GPU (or NUMBA_ENABLE_CUDASIM=1)",
                        where="backend", hint="use backend cpu")


def torch_device() -> torch.device:
    return torch.device("cpu" if simulator() else "cuda")


def to_dev(x: Any):
    """A torch tensor or NumPy array as a Numba device array (zero-copy on a real GPU)."""
    if isinstance(x, torch.Tensor):
        if simulator():
            return cuda.to_device(x.detach().cpu().numpy())
        return cuda.as_cuda_array(x.detach().to("cuda"))
    return cuda.to_device(np.ascontiguousarray(x))


def to_torch(a) -> torch.Tensor:
    if simulator():
        return torch.from_numpy(a.copy_to_host())
    return torch.as_tensor(a, device="cuda")


_stores: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def device_store(store: Any, columns: tuple[str, ...]) -> dict:
    """Device copies of the store's offsets and columns (cached per store)."""
    try:
        cache = _stores.setdefault(store, {})
    except TypeError:
        cache = {}
    for name in ("offsets", "ts", *columns):
        if name not in cache:
            host = store.offsets if name == "offsets" else store.columns[name]
            cache[name] = to_dev(np.asarray(host))
    return cache


def table_arg(table: Any, elem: str):
    """A table as the kernel reads it: fp32, fp16, or bf16 bits as (u)int16."""
    if isinstance(table, torch.Tensor):
        if elem == "bf16":
            table = table.view(torch.int16)
        return to_dev(table.contiguous())
    a = np.ascontiguousarray(table)
    return to_dev(a)


def _chunks(store: Any, users: np.ndarray, chunk: int) -> int:
    offsets = np.asarray(store.offsets)
    longest = int((offsets[users + 1] - offsets[users]).max()) if len(users) else 0
    return max(1, -(-longest // chunk))


def _grid1(n: int) -> tuple[int, int]:
    return max(1, -(-n // THREADS)), THREADS


def _counts(ir: SpecIR, plan: KernelPlan, module, dev: dict, d_users, d_times,
            users: np.ndarray, store: Any, chunk: int):
    """Per (user, chunk, slice) counts and weight sums, per-event slot bits and weights.

    Raises on bad weights. Returns (counts, wsums) as torch and (base, masks, wvals) as
    device arrays: ``base[b]`` is row b's first event position in ``masks``/``wvals``.
    """
    B, S = len(users), len(plan.slices)
    offsets = np.asarray(store.offsets)
    lens = offsets[users + 1] - offsets[users]
    base = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64) if B else lens
    total = int(lens.sum())
    nch = _chunks(store, users, chunk)
    dev_t = torch_device()
    counts = to_dev(torch.zeros((B, nch, S), dtype=torch.int32, device=dev_t))
    wsums = to_dev(torch.zeros((B, nch, S), dtype=torch.float64, device=dev_t))
    words = (len(plan.slots) + 63) // 64
    n_w = len({s.weight for s in plan.slots if s.weight >= 0})
    # Read only where the count kernel wrote them: no need to clear.
    masks = cuda.device_array((max(total, 1), words), np.uint64)
    wvals = cuda.device_array((max(total, 1), max(n_w, 1)), np.float32)
    rows = cuda.device_array((max(total, 1), len(codegen.row_functions(plan))), np.int32)
    bad = cuda.to_device(np.zeros(B, np.int64))
    d_base = to_dev(base)
    cols = [dev[c] for c in plan.columns]
    grid, block = _grid1(B * nch)
    module.count[grid, block](dev["offsets"], d_users, d_times, dev["ts"], *cols, chunk,
                              d_base, counts, wsums, bad, masks, wvals, rows)
    error = bad_weight_error(plan, ir, bad.copy_to_host())
    if error is not None:
        raise error
    return to_torch(counts), to_torch(wsums), (d_base, masks, wvals, rows)


def pool_fused(ir: SpecIR, plan: KernelPlan, store: Any, users: np.ndarray, times: np.ndarray,
               tables: Mapping[str, Any], elem: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused pooled output on the GPU: ``[B, S, D]`` float32 and counts ``[B, S]``."""
    import time

    _require()
    module = codegen.load(plan, "cuda", elem, simulator=simulator())
    dev = device_store(store, plan.columns)
    t0 = _phase("setup", time.perf_counter())
    d_users, d_times = to_dev(users), to_dev(times)
    counts, wsums, (d_base, masks, wvals, rows) = _counts(
        ir, plan, module, dev, d_users, d_times, users, store, codegen.CUDA_CHUNK_COUNT)
    t0 = _phase("count", t0)
    B, S, D = len(users), len(plan.slices), plan.dim
    out_t = torch.zeros((B, S, D), dtype=torch.float32, device=torch_device())
    out = to_dev(out_t) if not simulator() else cuda.to_device(out_t.numpy())
    tabs = [table_arg(tables[t.name], elem) for t in plan.tables]
    nch = _chunks(store, users, codegen.CUDA_CHUNK_FUSED)
    t0 = _phase("alloc", t0)
    module.fused[(B, nch), D](dev["offsets"], d_users, d_times, dev["ts"], d_base, masks, wvals,
                              rows, *tabs, out)
    t0 = _phase("fused", t0)
    pooled = to_torch(out)
    result = finalize(plan, pooled, counts.sum(1, dtype=torch.int64), wsums.sum(1))
    _phase("finalize", t0)
    return result


def finalize(plan: KernelPlan, sums: torch.Tensor, counts: torch.Tensor,
             wsums: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Divide slot sums by the count (mean) or weight sum (weighted mean); empty -> 0."""
    pool = torch.tensor([codegen.POOL_CODES[s.pooling] for s in plan.slices],
                        device=sums.device)
    den = torch.where(pool == 0, counts.double(), torch.where(pool == 1, wsums,
                                                               torch.ones_like(wsums)))
    scale = torch.where(counts > 0, 1.0 / den, torch.zeros_like(den)).float()
    return sums * scale[:, :, None], counts


def slice_jagged(ir: SpecIR, plan: KernelPlan, store: Any, users: np.ndarray,
                 times: np.ndarray, keys: tuple[str, ...]):
    """Jagged output on the GPU (see :class:`dv365.kernels.jagged.JaggedSlices`)."""
    from dv365.kernels.jagged import JaggedSlices

    _require()
    module = codegen.load(plan, "cuda", "f32", simulator=simulator())
    dev = device_store(store, plan.columns)
    d_users, d_times = to_dev(users), to_dev(times)
    counts, wsums, _ = _counts(ir, plan, module, dev, d_users, d_times, users, store,
                               JAGGED_CHUNK)
    B, S = len(users), len(plan.slices)
    counts64 = counts.to(torch.int64)
    totals = counts64.sum(1)
    lengths = totals.T.reshape(-1).contiguous()
    bag_start = torch.cumsum(lengths, 0) - lengths
    pos = (torch.cumsum(counts64, 1) - counts64) + bag_start.view(S, B).T[:, None, :]
    total = int(lengths.sum())
    device = torch_device()
    values = torch.empty(total, dtype=torch.int64, device=device)
    weights = torch.empty(total, dtype=torch.float32, device=device)
    d_pos, d_tot, d_wtot = to_dev(pos.contiguous()), to_dev(totals), to_dev(wsums.sum(1))
    d_values, d_weights = to_dev(values), to_dev(weights)
    cols = [dev[c] for c in plan.columns]
    grid, block = _grid1(B * pos.shape[1])
    if total:
        module.fill[grid, block](dev["offsets"], d_users, d_times, dev["ts"], *cols,
                                 JAGGED_CHUNK, d_pos,
                                 d_tot, d_wtot, d_values, d_weights)
    if simulator():
        values = torch.from_numpy(d_values.copy_to_host())
        weights = torch.from_numpy(d_weights.copy_to_host())
    return JaggedSlices(keys, lengths, values, weights, totals)
