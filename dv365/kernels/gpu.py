"""Launching the generated CUDA kernels (real GPU, or Numba's simulator on CPU).

With ``NUMBA_ENABLE_CUDASIM=1`` the same generated source runs in Numba's CUDA simulator
(plain Python threads, slow, for tests); the only difference is how bf16 bits are widened.
Store columns are copied to the device once per store object and kept there. Small
bookkeeping between kernels (summing per-chunk counts, the scan that places each chunk's
rows, the finalize division) is done with torch on the same device.
"""

from __future__ import annotations

import warnings
import weakref
from typing import Any, Mapping

import numpy as np
import torch

if not hasattr(np, "row_stack"):  # numba-cuda still imports np.row_stack (gone in NumPy 2.5)
    np.row_stack = np.vstack  # type: ignore[attr-defined]

from numba import config, cuda  # noqa: E402

from dv365.errors import DataError  # noqa: E402
from dv365.kernels import codegen, cuda_source  # noqa: E402
from dv365.kernels.backend import bad_weight_error  # noqa: E402
from dv365.kernels.plan import KernelPlan  # noqa: E402
from dv365.kernels.source import row_fn_of, weight_columns  # noqa: E402
from dv365.slices.ir import SpecIR  # noqa: E402

THREADS = 128
# Events per thread of the jagged path's tally and fill kernels (a thread per (row, chunk,
# slot)): small enough that a batch has threads to keep the GPU's memory busy.
JAGGED_CHUNK = 256
# Events per tally thread for the fused output, which needs only per-row totals.
TALLY_CHUNK_FUSED = 512
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
    """A torch tensor or NumPy array as a Numba device array (zero-copy on a real GPU).

    On a GPU, NumPy arrays travel through torch: its caching allocator reuses memory where
    ``cuda.to_device`` would cudaMalloc (and later cudaFree, which synchronizes) per array;
    a batch's dozen small arrays took 1.5-2 ms that way on the H200."""
    if isinstance(x, torch.Tensor):
        if simulator():
            return cuda.to_device(x.detach().cpu().numpy())
        return cuda.as_cuda_array(x.detach().to("cuda"))
    x = np.ascontiguousarray(x)
    if simulator() or x.dtype == np.uint64:  # torch has no uint64 copies
        return cuda.to_device(x)
    with warnings.catch_warnings():  # a read-only store column: only copied, never written
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        host = torch.from_numpy(x)
    return cuda.as_cuda_array(host.to("cuda"))


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



def _grid1(n: int) -> tuple[int, int]:
    return max(1, -(-n // THREADS)), THREADS


class _PlanArrays:
    """A plan's slot -> slices table (CSR) on the device, for ``tally`` and ``fill``."""

    def __init__(self, plan: KernelPlan):
        by_slot = [plan.slices_of_slot(s.index) for s in plan.slots]
        ptr = np.zeros(len(plan.slots) + 1, np.int64)
        ptr[1:] = np.cumsum([len(x) for x in by_slot])
        flat = [sl for x in by_slot for sl in x]
        rowfn = row_fn_of(plan)
        self.slot_ptr = to_dev(ptr)
        self.slot_slices = to_dev(np.array([sl.index for sl in flat], np.int64))
        self.slice_band = to_dev(np.array([sl.band for sl in flat], np.int64))
        self.slice_pool = to_dev(np.array([codegen.POOL_CODES[sl.pooling] for sl in flat],
                                          np.int64))
        wcol = weight_columns(plan)
        self.slot_wcol = to_dev(np.array([wcol.get(s.weight, -1)
                                          for s in plan.slots], np.int64))
        self.slot_row = to_dev(np.array([rowfn[s.table] for s in plan.slots], np.int64))


_plan_arrays: dict[str, _PlanArrays] = {}


def plan_arrays(plan: KernelPlan) -> _PlanArrays:
    key = plan.key()
    if key not in _plan_arrays:
        _plan_arrays[key] = _PlanArrays(plan)
    return _plan_arrays[key]


class Marks:
    """What ``mark`` wrote for a batch: per event (at batch position ``base[b] + i -
    offsets[user]``) its slot bits, rows and weights; per row its band starts."""

    def __init__(self, batch: int, users, starts, base, masks, wvals, rows, longest: int,
                 epos=None, ents=None, counts=None, wsums=None):
        self.batch = batch  # rows in the batch (the device arrays have at least one)
        self.users, self.starts, self.base = users, starts, base
        self.masks, self.wvals, self.rows = masks, wvals, rows
        self.longest = longest
        # entries (``mark_entries``): event q's are ents[j, q], j < epos[q + 1] - epos[q];
        # epos is the running total over the batch
        self.epos, self.ents = epos, ents
        # per (row, slice), when ``mark_entries`` counted (CUDA_ENTRY_COUNTING = "mark")
        self.counts, self.wsums = counts, wsums


def _empty(shape, dtype: torch.dtype, unsigned: bool = False):
    """An uninitialized device array from torch's caching allocator (a fresh
    ``cuda.device_array`` is a cudaMalloc and cudaFree per call: gigabytes per batch);
    ``unsigned`` int64 stands in for uint64, which torch lacks."""
    arr = to_dev(torch.empty(shape, dtype=dtype, device=torch_device()))
    return arr.view(np.uint64) if unsigned else arr


def _count_arrays(plan: KernelPlan, batch: int):
    """Zeroed device counts (int32) and weight sums (float64) per (row, slice)."""
    shape = (batch, len(plan.slices))
    return (to_dev(torch.zeros(shape, dtype=torch.int32, device=torch_device())),
            to_dev(torch.zeros(shape, dtype=torch.float64, device=torch_device())))


def mark(ir: SpecIR, plan: KernelPlan, module, dev: dict, users: np.ndarray,
         times: np.ndarray, store: Any, entries: bool = False, jagged: bool = True) -> Marks:
    """Run ``bounds`` and ``mark`` (``mark_entries`` with ``entries``) for a batch; raises
    on a bad weight. ``mark_entries`` writes the slot bits and rows (which only the jagged
    output reads) when ``jagged``."""
    import time

    t0 = time.perf_counter()
    B, K = len(users), len(plan.windows)
    offsets = np.asarray(store.offsets)
    lens = offsets[users + 1] - offsets[users]
    base = (np.cumsum(lens) - lens).astype(np.int64)
    total = max(int(lens.sum()), 1)
    longest = int(lens.max()) if B else 0
    lay = cuda_source.layout(plan)
    d_users, d_times = to_dev(users), to_dev(times)
    starts = _empty((max(B, 1), K + 1), torch.int64)
    # Read only where ``mark`` wrote them (events inside the bands): no need to clear.
    bits_rows = total if jagged or not entries else 1  # events given slot bits and rows
    masks = _empty(bits_rows * lay["words"], torch.int64, unsigned=True)
    wvals = _empty(total * max(lay["weights"], 1), torch.float64)
    rows = _empty(bits_rows * lay["rows"], torch.int32)
    bad = to_dev(torch.zeros(max(B, 1), dtype=torch.int64, device=torch_device()))
    d_base = to_dev(base)
    if B:
        grid, block = _grid1(B)
        module.bounds[grid, block](dev["offsets"], d_users, d_times, dev["ts"], starts)
        t0 = _phase("bounds", t0)
        per_block = module.MARK_ENTRIES_EVENTS if entries else module.MARK_EVENTS
        blocks = max(1, -(-longest // per_block))
        cols = [dev[c] for c in plan.columns]
    epos = ents = None
    if entries:
        nsel_t = torch.zeros((module.ENTRY_GROUPS, total), dtype=torch.int32,
                             device=torch_device())
        nsel = to_dev(nsel_t)
        ents = _empty((module.ENTRY_SEGMENTS, total), torch.int64, unsigned=True)
    counts = wsums = None
    if entries and cuda_source.CUDA_ENTRY_COUNTING == "mark":
        counts, wsums = _count_arrays(plan, B)
    if B:
        launch = module.mark_entries if entries else module.mark
        extra = (nsel, ents, jagged) if entries else ()
        extra += (counts, wsums) if counts is not None else ()
        launch[(B, blocks), cuda_source.CUDA_MARK_THREADS](
            dev["offsets"], d_users, starts, *cols, d_base, bad, masks, wvals, rows, *extra)
        t0 = _phase("mark_kernel", t0)
    error = bad_weight_error(plan, ir, bad.copy_to_host()[:B])
    if error is not None:
        raise error
    t0 = _phase("bad_weights", t0)
    if entries:
        epos_t = torch.empty((module.ENTRY_GROUPS, total + 1), dtype=torch.int64,
                             device=torch_device())
        epos_t[:, 0] = 0
        per_event = to_torch(nsel)
        for g in range(module.ENTRY_GROUPS):
            # a contiguous out per group: cumsum along dim 1 into the strided view
            # epos_t[:, 1:] took 80 ms for 41 M events on the H200
            torch.cumsum(per_event[g], 0, out=epos_t[g, 1:])
        epos = to_dev(epos_t)
        _phase("entry_positions", t0)
    return Marks(B, d_users, starts, d_base, masks, wvals, rows, longest, epos, ents, counts,
                 wsums)


def tally(plan: KernelPlan, module, dev: dict, marks: Marks, chunk: int
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Counts (int32) and weight sums (float64) per (row, chunk of ``chunk`` events, slice)."""
    B, S, N = marks.batch, len(plan.slices), len(plan.slots)
    nch = max(1, -(-marks.longest // chunk))
    dev_t = torch_device()
    counts_t = torch.zeros((B, nch, S), dtype=torch.int32, device=dev_t)
    wsums_t = torch.zeros((B, nch, S), dtype=torch.float64, device=dev_t)
    counts, wsums = to_dev(counts_t), to_dev(wsums_t)
    pa = plan_arrays(plan)
    grid, block = _grid1(B * nch * N)
    if B:
        module.tally[grid, block](dev["offsets"], marks.users, marks.starts, marks.base,
                                  marks.masks, marks.wvals, pa.slot_ptr, pa.slot_slices,
                                  pa.slice_band, pa.slot_wcol, chunk, counts, wsums)
    return to_torch(counts), to_torch(wsums)


_packed: dict[str, tuple[tuple, Any]] = {}


def packed_tables(plan: KernelPlan, tables: Mapping[str, Any], elem: str):
    """The plan's tables as one flat device buffer (table t from row ``table_offsets[t]``).

    One base address instead of one per table keeps the fused kernel's registers for its
    accumulators. The copy (the tables' bytes once, a fraction of a millisecond per GB on an
    H200) is kept while the same tensors, unmodified, are passed again."""
    parts = []
    for t in plan.tables:
        x = tables[t.name]
        x = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
        if tuple(x.shape) != (t.num_rows, plan.dim):
            raise DataError(f"table {t.name!r} has shape {tuple(x.shape)}, the spec says "
                            f"({t.num_rows}, {plan.dim})", where=f"tables[{t.name!r}]")
        parts.append(x)
    key = tuple((x.data_ptr(), x._version, str(x.device)) for x in parts)
    hit = _packed.get(plan.key() + elem)
    if hit is not None and hit[0] == key:
        return hit[1]
    flat = torch.cat([x.detach().to(torch_device()).reshape(-1) for x in parts])
    if elem == "bf16":
        flat = flat.view(torch.int16)
    arg = to_dev(flat)
    _packed.clear()  # one packed set at a time: tables can be large
    _packed[plan.key() + elem] = (key, arg)
    return arg


def pool_fused(ir: SpecIR, plan: KernelPlan, store: Any, users: np.ndarray, times: np.ndarray,
               tables: Mapping[str, Any], elem: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused pooled output on the GPU: ``[B, S, D]`` float32 and counts ``[B, S]``."""
    import time

    _require()
    module = codegen.load(plan, "cuda", elem, simulator=simulator())
    dev = device_store(store, plan.columns)
    t0 = _phase("setup", time.perf_counter())
    marks = mark(ir, plan, module, dev, users, times, store, entries=_entries(), jagged=False)
    _phase("mark", t0)
    return _fused_from_marks(plan, module, dev, marks, tables, elem)


def pool_and_slice(ir: SpecIR, plan: KernelPlan, store: Any, users: np.ndarray,
                   times: np.ndarray, tables: Mapping[str, Any], elem: str,
                   keys: tuple[str, ...]):
    """Both outputs from one ``mark`` pass: ``(pooled, counts, jagged)``, as
    :func:`pool_fused` and :func:`slice_jagged` give them (the autograd op's forward needs
    the pooled vectors and, for its backward, the rows)."""
    _require()
    module = codegen.load(plan, "cuda", elem, simulator=simulator())
    dev = device_store(store, plan.columns)
    marks = mark(ir, plan, module, dev, users, times, store, entries=_entries())
    pooled, counts = _fused_from_marks(plan, module, dev, marks, tables, elem)
    return pooled, counts, _jagged_from_marks(plan, module, dev, marks, keys)


def _fused_from_marks(plan: KernelPlan, module, dev: dict, marks: Marks,
                      tables: Mapping[str, Any], elem: str
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    import time

    t0 = time.perf_counter()
    B, S, D = marks.batch, len(plan.slices), plan.dim
    dev_t = torch_device()
    out = to_dev(torch.zeros(B * S * D, dtype=torch.float32, device=dev_t))
    # counted by mark_entries (CUDA_ENTRY_COUNTING = "mark"), else by the fused kernels or tally
    counts, wsums = ((marks.counts, marks.wsums) if marks.counts is not None
                     else _count_arrays(plan, B))
    tab = packed_tables(plan, tables, elem)
    nch = max(1, -(-marks.longest // cuda_source.CUDA_CHUNK_FUSED))
    db = cuda_source.dims_per_block(D)
    threads = cuda_source.fused_threads(D)
    t0 = _phase("alloc", t0)
    if marks.ents is not None:
        if B:
            module.fused_entries[(B, nch, module.ENTRY_BLOCKS_Z), threads](
                dev["offsets"], marks.users, marks.starts, marks.base, marks.epos, marks.ents,
                marks.wvals, tab, out, counts, wsums)
        t0 = _phase("fused", t0)
        pooled = to_torch(out).view(B, S, D)
        result = finalize(plan, pooled, to_torch(counts).to(torch.int64), to_torch(wsums))
        _phase("finalize", t0)
        return result
    for g in range(module.FUSED_GROUPS if B else 0):
        getattr(module, f"fused{g}")[(B, nch, D // db), threads](
            dev["offsets"], marks.users, marks.starts, marks.base, marks.masks, marks.wvals,
            marks.rows, tab, out, counts, wsums)
    t0 = _phase("fused", t0)
    if cuda_source.CUDA_FUSED_COUNTS:
        counts_t, wsums_t = to_torch(counts), to_torch(wsums)
    else:
        per_chunk, per_chunk_w = tally(plan, module, dev, marks, TALLY_CHUNK_FUSED)
        counts_t, wsums_t = per_chunk.sum(1, dtype=torch.int32), per_chunk_w.sum(1)
        t0 = _phase("tally", t0)
    pooled = to_torch(out).view(B, S, D)
    result = finalize(plan, pooled, counts_t.to(torch.int64), wsums_t)
    _phase("finalize", t0)
    return result


def _entries() -> bool:
    return cuda_source.CUDA_FUSED_DESIGN == "entries"


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
    _require()
    module = codegen.load(plan, "cuda", "f32", simulator=simulator())
    dev = device_store(store, plan.columns)
    marks = mark(ir, plan, module, dev, users, times, store)
    return _jagged_from_marks(plan, module, dev, marks, keys)


def _jagged_from_marks(plan: KernelPlan, module, dev: dict, marks: Marks,
                       keys: tuple[str, ...]):
    import time

    from dv365.kernels.jagged import JaggedSlices

    t0 = time.perf_counter()
    counts, wsums = tally(plan, module, dev, marks, JAGGED_CHUNK)
    t0 = _phase("jagged_tally", t0)
    B, S = marks.batch, len(plan.slices)
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
    pa = plan_arrays(plan)
    grid, block = _grid1(B * pos.shape[1] * len(plan.slots))
    t0 = _phase("jagged_scan", t0)
    if total:
        module.fill[grid, block](dev["offsets"], marks.users, marks.starts, marks.base,
                                 marks.masks, marks.wvals, marks.rows, pa.slot_ptr,
                                 pa.slot_slices, pa.slice_band, pa.slice_pool, pa.slot_wcol,
                                 pa.slot_row, JAGGED_CHUNK, d_pos, d_tot, d_wtot, d_values,
                                 d_weights)
    _phase("jagged_fill", t0)
    if simulator():
        values = torch.from_numpy(d_values.copy_to_host())
        weights = torch.from_numpy(d_weights.copy_to_host())
    return JaggedSlices(keys, lengths, values, weights, totals)
