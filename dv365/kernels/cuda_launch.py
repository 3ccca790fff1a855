"""Launching the generated CUDA kernels (a real GPU, or Numba's simulator on CPU).

With ``NUMBA_ENABLE_CUDASIM=1`` the same generated source runs in Numba's CUDA simulator
(plain Python threads, slow, for tests). Per batch:

* fused output: ``bounds`` -> ``mark_entries`` (entries, counts, weight sums) -> entry
  positions (a cumsum per entry group) -> ``fused_entries`` -> finalize (divide by counts or
  weight sums);
* jagged output: ``bounds`` -> ``mark`` -> ``tally`` -> positions (scans) -> ``fill``;
* both (the autograd op): one ``mark_entries`` pass that also writes slot bits and rows.

Device memory comes from torch's caching allocator (a fresh ``cuda.device_array`` is a
cudaMalloc and a synchronizing cudaFree per call). Store columns, packed tables and a plan's
lookup arrays stay on the device between batches (:data:`dv365.kernels.cache.CACHES`).
Small bookkeeping between kernels is done with torch on the same device.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

if not hasattr(np, "row_stack"):  # numba-cuda still imports np.row_stack (gone in NumPy 2.5)
    np.row_stack = np.vstack  # type: ignore[attr-defined]

from numba import config, cuda  # noqa: E402

from dv365.data.event_store import EventStore  # noqa: E402
from dv365.errors import DataError  # noqa: E402
from dv365.kernels import codegen  # noqa: E402
from dv365.kernels.cache import CACHES  # noqa: E402
from dv365.kernels.checks import check_tables, raise_bad_weight  # noqa: E402
from dv365.kernels.cuda_layout import CudaLayout  # noqa: E402
from dv365.kernels.cuda_tuning import DEFAULT_TUNING, CudaTuning  # noqa: E402
from dv365.kernels.jagged_slices import JaggedSlices  # noqa: E402
from dv365.kernels.launch import Launch  # noqa: E402
from dv365.kernels.plan import KernelPlan  # noqa: E402
from dv365.kernels.source import POOL_CODES  # noqa: E402

THREADS = 128  # threads per block of the one-dimensional kernels
# Events per thread of the jagged path's tally and fill kernels (a thread per (row, chunk,
# slot)): small enough that a batch has threads to keep the GPU's memory busy.
JAGGED_CHUNK = 256


def simulator() -> bool:
    """True when Numba's CUDA simulator stands in for a GPU."""
    return bool(config.ENABLE_CUDASIM)


def available() -> bool:
    """A GPU (or the simulator) can run the CUDA backend."""
    return simulator() or cuda.is_available()


def torch_device() -> torch.device:
    """Where the launcher's torch tensors live (the CPU under the simulator)."""
    return torch.device("cpu" if simulator() else "cuda")


def to_dev(x: Any):
    """A torch tensor or NumPy array as a Numba device array (zero-copy on a real GPU).

    On a GPU, NumPy arrays travel through torch: its caching allocator reuses memory where
    ``cuda.to_device`` would cudaMalloc (and later cudaFree, which synchronizes) per array."""
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
    """A Numba device array as a torch tensor (a copy to the host under the simulator)."""
    if simulator():
        return torch.from_numpy(a.copy_to_host())
    return torch.as_tensor(a, device="cuda")


def _empty(shape, dtype: torch.dtype, unsigned: bool = False):
    """An uninitialized device array from torch's caching allocator; ``unsigned`` int64
    stands in for uint64, which torch lacks."""
    arr = to_dev(torch.empty(shape, dtype=dtype, device=torch_device()))
    return arr.view(np.uint64) if unsigned else arr


def _zeros(shape, dtype: torch.dtype):
    return to_dev(torch.zeros(shape, dtype=dtype, device=torch_device()))


def _grid1(n: int) -> tuple[int, int]:
    return max(1, -(-n // THREADS)), THREADS


def device_columns(store: EventStore, columns: tuple[str, ...]) -> dict:
    """Device copies of the store's offsets and columns (kept per store)."""
    cache = CACHES.device_columns.of(store)
    for name in ("offsets", "ts", *columns):
        if name not in cache:
            host = store.offsets if name == "offsets" else store.columns[name]
            cache[name] = to_dev(np.asarray(host))
    return cache


@dataclass
class _PlanArrays:
    """A plan's slot -> slices table (CSR) on the device, for ``tally`` and ``fill``."""

    slot_ptr: Any
    slot_slices: Any
    slice_band: Any
    slice_pool: Any
    slot_wcol: Any
    slot_row: Any

    @classmethod
    def of(cls, layout: CudaLayout) -> "_PlanArrays":
        plan = layout.plan
        by_slot = [plan.slices_of_slot(s.index) for s in plan.slots]
        ptr = np.zeros(len(plan.slots) + 1, np.int64)
        ptr[1:] = np.cumsum([len(x) for x in by_slot])
        flat = [sl for x in by_slot for sl in x]
        rowfn, wcol = layout.row_function_of_table, layout.weight_columns
        return cls(
            slot_ptr=to_dev(ptr),
            slot_slices=to_dev(np.array([sl.index for sl in flat], np.int64)),
            slice_band=to_dev(np.array([sl.band for sl in flat], np.int64)),
            slice_pool=to_dev(np.array([POOL_CODES[sl.pooling] for sl in flat], np.int64)),
            slot_wcol=to_dev(np.array([wcol.get(s.weight, -1) for s in plan.slots], np.int64)),
            slot_row=to_dev(np.array([rowfn[s.table] for s in plan.slots], np.int64)))


@dataclass
class Marks:
    """What ``mark`` or ``mark_entries`` wrote for a batch: per event (at batch position
    ``base[b] + i - offsets[user]``) its slot bits, rows and weights; per row its band
    starts; with entries, each event's entries and per (row, slice) counts and weight sums."""

    batch: int  # rows in the batch (the device arrays have at least one)
    users: Any
    starts: Any
    base: Any
    masks: Any
    wvals: Any
    rows: Any
    longest: int
    # event q's entries are ents[j, q], j < epos[g, q + 1] - epos[g, q] (running totals)
    epos: Any = None
    ents: Any = None
    counts: Any = None
    wsums: Any = None


def finalize(plan: KernelPlan, sums: torch.Tensor, counts: torch.Tensor,
             wsums: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Divide slot sums by the count (mean) or weight sum (weighted mean); empty -> 0."""
    pool = torch.tensor([POOL_CODES[s.pooling] for s in plan.slices], device=sums.device)
    den = torch.where(pool == 0, counts.double(), torch.where(pool == 1, wsums,
                                                               torch.ones_like(wsums)))
    scale = torch.where(counts > 0, 1.0 / den, torch.zeros_like(den)).float()
    return sums * scale[:, :, None], counts


class CudaLauncher:
    """Runs launches with the generated CUDA kernels under one :class:`CudaTuning`.

    ``phases``, when given, collects seconds per phase (``bounds``, ``mark_kernel``,
    ``fused``, ...), synchronizing after each: for benchmarks that read where the time goes.
    """

    def __init__(self, tuning: CudaTuning = DEFAULT_TUNING,
                 phases: dict[str, float] | None = None):
        if not available():
            raise DataError("the cuda backend needs an NVIDIA GPU (or NUMBA_ENABLE_CUDASIM=1)",
                            where="backend", hint="use backend cpu")
        self.tuning = tuning
        self.phases = phases

    # ------------------------------------------------------------------ the three outputs
    def pooled(self, launch: Launch, tables: Mapping[str, Any]
               ) -> tuple[torch.Tensor, torch.Tensor]:
        elem = check_tables(launch.plan, tables)
        t0 = time.perf_counter()
        layout, module, dev = self._setup(launch, elem)
        t0 = self._phase("setup", t0)
        marks = self._mark(launch, layout, module, dev, entries=True, jagged=False)
        self._phase("mark", t0)
        return self._fused(layout, module, dev, marks, tables, elem)

    def jagged(self, launch: Launch) -> JaggedSlices:
        layout, module, dev = self._setup(launch, "f32")
        marks = self._mark(launch, layout, module, dev, entries=False, jagged=True)
        return self._jagged(launch, layout, module, dev, marks)

    def pooled_and_jagged(self, launch: Launch, tables: Mapping[str, Any]
                          ) -> tuple[torch.Tensor, torch.Tensor, JaggedSlices]:
        elem = check_tables(launch.plan, tables)
        layout, module, dev = self._setup(launch, elem)
        marks = self._mark(launch, layout, module, dev, entries=True, jagged=True)
        pooled, counts = self._fused(layout, module, dev, marks, tables, elem)
        return pooled, counts, self._jagged(launch, layout, module, dev, marks)

    # ------------------------------------------------------------------ steps
    def _phase(self, name: str, t0: float) -> float:
        if self.phases is None:
            return t0
        cuda.synchronize()
        now = time.perf_counter()
        self.phases[name] = self.phases.get(name, 0.0) + now - t0
        return now

    def _setup(self, launch: Launch, elem: str):
        layout = codegen.layout_for(launch.plan, self.tuning)
        module = codegen.load(launch.plan, "cuda", elem, simulator=simulator(),
                              tuning=self.tuning)
        return layout, module, device_columns(launch.store, launch.plan.columns)

    def _mark(self, launch: Launch, layout: CudaLayout, module, dev: dict, *, entries: bool,
              jagged: bool) -> Marks:
        """``bounds`` and ``mark`` (``mark_entries`` with ``entries``, which writes slot bits
        and rows only when ``jagged``); raises on a bad weight."""
        t0 = time.perf_counter()
        plan, batch = launch.plan, launch.batch
        B, K = len(batch), layout.bands
        lens = batch.history_lengths(launch.store)
        base = batch.event_positions(launch.store)
        total = max(int(lens.sum()), 1)
        longest = int(lens.max()) if B else 0
        d_users, d_times = to_dev(batch.users), to_dev(batch.request_ts)
        starts = _empty((max(B, 1), K + 1), torch.int64)
        # Read only where ``mark`` wrote them (events inside the bands): no need to clear.
        bits_rows = total if jagged else 1  # events given slot bits and rows
        masks = _empty(bits_rows * layout.mask_words, torch.int64, unsigned=True)
        wvals = _empty(total * layout.weight_width, torch.float64)
        rows = _empty(bits_rows * layout.rows_per_event, torch.int32)
        bad = _zeros(max(B, 1), torch.int64)
        d_base = to_dev(base)
        cols = [dev[c] for c in plan.columns]
        marks = Marks(B, d_users, starts, d_base, masks, wvals, rows, longest)
        if B:
            grid, block = _grid1(B)
            module.bounds[grid, block](dev["offsets"], d_users, d_times, dev["ts"], starts)
            t0 = self._phase("bounds", t0)
        if entries:
            nsel = _zeros((layout.entry_groups, total), torch.int32)
            marks.ents = _empty((len(layout.segments), total), torch.int64, unsigned=True)
            marks.counts = _zeros((B, len(plan.slices)), torch.int32)
            marks.wsums = _zeros((B, len(plan.slices)), torch.float64)
            if B:
                blocks = max(1, -(-longest // module.MARK_ENTRIES_EVENTS))
                module.mark_entries[(B, blocks), self.tuning.mark_threads](
                    dev["offsets"], d_users, starts, *cols, d_base, bad, masks, wvals, rows,
                    nsel, marks.ents, jagged, marks.counts, marks.wsums)
        elif B:
            blocks = max(1, -(-longest // module.MARK_EVENTS))
            module.mark[(B, blocks), self.tuning.mark_threads](
                dev["offsets"], d_users, starts, *cols, d_base, bad, masks, wvals, rows)
        t0 = self._phase("mark_kernel", t0)
        raise_bad_weight(plan, launch.ir, bad.copy_to_host()[:B])
        t0 = self._phase("bad_weights", t0)
        if entries:
            epos = torch.empty((layout.entry_groups, total + 1), dtype=torch.int64,
                               device=torch_device())
            epos[:, 0] = 0
            per_event = to_torch(nsel)
            for g in range(layout.entry_groups):
                # a contiguous out per group: a cumsum into the strided view epos[:, 1:]
                # is many times slower on a GPU
                torch.cumsum(per_event[g], 0, out=epos[g, 1:])
            marks.epos = to_dev(epos)
            self._phase("entry_positions", t0)
        return marks

    def _packed_tables(self, plan: KernelPlan, tables: Mapping[str, Any], elem: str):
        """The plan's tables as one flat device buffer (table t from its first packed row).

        One base address instead of one per table keeps the fused kernel's registers for its
        accumulators. The copy is kept while the same tensors, unmodified, come again."""
        parts = []
        for t in plan.tables:
            x = tables[t.name]
            parts.append(x if isinstance(x, torch.Tensor)
                         else torch.from_numpy(np.ascontiguousarray(x)))
        key = tuple((x.data_ptr(), x._version, str(x.device)) for x in parts)
        hit = CACHES.packed_tables.get(plan.key() + elem)
        if hit is not None and hit[0] == key:
            return hit[1]
        flat = torch.cat([x.detach().to(torch_device()).reshape(-1) for x in parts])
        if elem == "bf16":
            flat = flat.view(torch.int16)
        arg = to_dev(flat)
        CACHES.packed_tables.put(plan.key() + elem, (key, arg))
        return arg

    def _fused(self, layout: CudaLayout, module, dev: dict, marks: Marks,
               tables: Mapping[str, Any], elem: str) -> tuple[torch.Tensor, torch.Tensor]:
        t0 = time.perf_counter()
        plan = layout.plan
        B, S, D = marks.batch, len(plan.slices), plan.dim
        out = _zeros(B * S * D, torch.float32)
        tab = self._packed_tables(plan, tables, elem)
        chunks = max(1, -(-marks.longest // self.tuning.fused_chunk_events))
        t0 = self._phase("alloc", t0)
        if B:
            module.fused_entries[(B, chunks, module.ENTRY_BLOCKS_Z), layout.lanes](
                dev["offsets"], marks.users, marks.starts, marks.base, marks.epos, marks.ents,
                marks.wvals, tab, out)
        t0 = self._phase("fused", t0)
        pooled = to_torch(out).view(B, S, D)
        result = finalize(plan, pooled, to_torch(marks.counts).to(torch.int64),
                          to_torch(marks.wsums))
        self._phase("finalize", t0)
        return result

    def _tally(self, layout: CudaLayout, module, dev: dict, marks: Marks
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Counts (int32) and weight sums (float64) per (row, chunk of events, slice)."""
        B, S, N = marks.batch, len(layout.plan.slices), len(layout.plan.slots)
        nch = max(1, -(-marks.longest // JAGGED_CHUNK))
        counts, wsums = _zeros((B, nch, S), torch.int32), _zeros((B, nch, S), torch.float64)
        pa = CACHES.plan_arrays.get_or_make(layout.plan.key(), lambda: _PlanArrays.of(layout))
        grid, block = _grid1(B * nch * N)
        if B:
            module.tally[grid, block](dev["offsets"], marks.users, marks.starts, marks.base,
                                      marks.masks, marks.wvals, pa.slot_ptr, pa.slot_slices,
                                      pa.slice_band, pa.slot_wcol, JAGGED_CHUNK, counts, wsums)
        return to_torch(counts), to_torch(wsums)

    def _jagged(self, launch: Launch, layout: CudaLayout, module, dev: dict, marks: Marks
                ) -> JaggedSlices:
        t0 = time.perf_counter()
        counts, wsums = self._tally(layout, module, dev, marks)
        t0 = self._phase("jagged_tally", t0)
        B, S = marks.batch, len(layout.plan.slices)
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
        pa = CACHES.plan_arrays.get_or_make(layout.plan.key(), lambda: _PlanArrays.of(layout))
        grid, block = _grid1(B * pos.shape[1] * len(layout.plan.slots))
        t0 = self._phase("jagged_scan", t0)
        if total:
            module.fill[grid, block](dev["offsets"], marks.users, marks.starts, marks.base,
                                     marks.masks, marks.wvals, marks.rows, pa.slot_ptr,
                                     pa.slot_slices, pa.slice_band, pa.slice_pool, pa.slot_wcol,
                                     pa.slot_row, JAGGED_CHUNK, d_pos, d_tot, d_wtot, d_values,
                                     d_weights)
        self._phase("jagged_fill", t0)
        if simulator():
            values = torch.from_numpy(d_values.copy_to_host())
            weights = torch.from_numpy(d_weights.copy_to_host())
        return JaggedSlices(launch.ir.slice_names, lengths, values, weights, totals)
