"""How a kernel plan is laid out on the GPU: computed once from (plan, tuning), typed.

The CUDA generator (:mod:`dv365.kernels.cuda_source` and the modules it assembles) and the
launcher (:mod:`dv365.kernels.cuda_launch`) both read one :class:`CudaLayout`, so the widths
of the per-event arrays, the block shapes and the entry groups are decided in one place.

**Entries.** ``mark_entries`` lists each event's *entries*: one per segment the event
selects, a *segment* being up to ``segment_slots`` slots of one table that share one weight.
An entry is one uint64: the packed table row (bits 0..31), the segment's slot bits (32..51)
and the segment (52..63). ``fused_entries`` walks them: one row load per entry, one
multiply-add per selected slot. **Entry groups** split the slots about evenly; a block holds
one group's accumulators only, so blocks stay small and many fit an SM.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from dv365.errors import DataError
from dv365.kernels.cuda_tuning import CudaTuning
from dv365.kernels.plan import KernelPlan, PlanSlice
from dv365.kernels.source import row_fn_of, row_functions, weight_columns

# Bits of an entry: 32 for the packed row, 20 slot bits, 12 for the segment (one kept free).
MAX_SEGMENTS = (1 << 11) - 1
# Staged entries hold a group's first slot in 12 bits.
MAX_GROUP_SLOTS = (1 << 12) - 1
MAX_PACKED_ROWS = (1 << 32) - 1
WARP = 32


@dataclass(frozen=True)
class Segment:
    """Up to ``segment_slots`` slots of one table that share one weight: what one entry
    names."""

    table: int  # plan table index
    weight: int  # weight expression index, -1 when unweighted
    slots: tuple[int, ...]  # plan slot indices, ascending


@dataclass(frozen=True)
class CudaLayout:
    """The plan's GPU layout (see the module docstring)."""

    plan: KernelPlan
    tuning: CudaTuning
    # per event, as ``mark`` writes it: 64-bit words of slot bits, one row per distinct row
    # function, one weight per distinct weight expression
    mask_words: int
    row_functions: tuple[tuple, ...]
    weight_columns: dict[int, int]
    # first row of each table in the packed table buffer, and all rows
    table_first_rows: tuple[int, ...]
    total_rows: int
    # fused blocks: dims each accumulates, dims per thread, threads (lanes), blocks along D
    dims_per_block: int
    dims_per_thread: int
    lanes: int
    dim_blocks: int
    # entry groups: segments group after group; each group's segment indices and slots
    segments: tuple[Segment, ...]
    groups: tuple[range, ...]
    group_slots: tuple[tuple[int, ...], ...]
    staged_entries: int
    offset32: bool

    @property
    def bands(self) -> int:
        return len(self.plan.windows)

    @property
    def rows_per_event(self) -> int:
        return len(self.row_functions)

    @property
    def weight_width(self) -> int:
        """Weights per event in ``wvals`` (at least one column, so arrays are never empty)."""
        return max(len(self.weight_columns), 1)

    @property
    def entry_groups(self) -> int:
        return len(self.groups)

    @property
    def accumulators(self) -> int:
        """Slots of the largest entry group: the accumulators a fused block holds."""
        return max((len(s) for s in self.group_slots), default=1)

    @cached_property
    def row_function_of_table(self) -> dict[int, int]:
        return row_fn_of(self.plan)

    @cached_property
    def local_slot(self) -> dict[int, int]:
        """Slot -> its accumulator within its entry group."""
        return {s: j for slots in self.group_slots for j, s in enumerate(slots)}

    @cached_property
    def segment_first_slot(self) -> tuple[int, ...]:
        """Per segment, the accumulator of its first slot within its group."""
        out = []
        for grp in self.groups:
            at = 0
            for i in grp:
                out.append(at)
                at += len(self.segments[i].slots)
        return tuple(out)

    @cached_property
    def weighted_slot(self) -> dict[int, int]:
        """Weighted slot -> its column among the weighted slots (mark's weight sums)."""
        return {sl.index: j for j, sl in enumerate(x for x in self.plan.slots if x.weight >= 0)}

    @cached_property
    def group_band_slices(self) -> tuple[list[int], list[PlanSlice]]:
        """Slices by (group, band), CSR: group g's band k is ``flat[ptr[g * (K + 1) + k] ...
        ptr[g * (K + 1) + k + 1]]`` (a block flushes a band's slices when it leaves it)."""
        ptr: list[int] = []
        flat: list[PlanSlice] = []
        for slots in self.group_slots:
            mine = set(slots)
            for k in range(self.bands):
                ptr.append(len(flat))
                flat += [sl for sl in self.plan.slices if sl.band == k and sl.slot in mine]
            ptr.append(len(flat))
        return ptr, flat


def dims_per_block(dim: int, cap: int) -> int:
    """All dims up to ``cap``, else the largest divisor of ``dim`` under it (a multiple of 32
    when there is one), so every thread owns real dimensions."""
    if dim <= cap:
        return dim
    divisors = [x for x in range(cap, 0, -1) if dim % x == 0]
    return next((x for x in divisors if x % WARP == 0), divisors[0])


def _segments(plan: KernelPlan, tuning: CudaTuning) -> list[Segment]:
    out = []
    for t in plan.tables:
        by_weight: dict[int, list[int]] = {}
        for sl in plan.slots_of_table(t.index):
            by_weight.setdefault(sl.weight, []).append(sl.index)
        for weight, slots in sorted(by_weight.items()):
            for at in range(0, len(slots), tuning.segment_slots):
                out.append(Segment(t.index, weight, tuple(slots[at:at + tuning.segment_slots])))
    if len(out) > MAX_SEGMENTS:
        raise DataError(
            f"the spec needs {len(out)} table segments on CUDA; the kernels hold at most "
            f"{MAX_SEGMENTS}", where="spec",
            hint="a segment is up to 20 slices of one table that share a filter window and "
                 "weight: use fewer distinct filters or weights per table")
    return out


def _grouped(plan: KernelPlan, tuning: CudaTuning, block_dims: int) -> list[list[Segment]]:
    """Segments dealt largest first to the group with the fewest slots so far, each group
    in table order."""
    segments = _segments(plan, tuning)
    sums = len(plan.slots) * block_dims * 4
    wanted = max(tuning.min_entry_groups, -(-sums // tuning.group_sum_bytes))
    n = max(1, min(wanted, len(segments)))
    groups: list[list[int]] = [[] for _ in range(n)]
    load = [0] * n
    for i in sorted(range(len(segments)), key=lambda i: -len(segments[i].slots)):
        g = load.index(min(load))
        groups[g].append(i)
        load[g] += len(segments[i].slots)
    return [[segments[i] for i in sorted(g)] for g in groups]


def cuda_layout(plan: KernelPlan, tuning: CudaTuning) -> CudaLayout:
    """The layout of ``plan`` under ``tuning``; a :class:`DataError` (one line, with what to
    change in the spec) when the spec is past what the kernels can address."""
    D = plan.dim
    block_dims = dims_per_block(D, tuning.max_dims_per_block)
    # one warp per block whose lanes split the block's dims when 32 divides them
    per_thread = block_dims // WARP if block_dims % WARP == 0 else 1
    grouped = _grouped(plan, tuning, block_dims)
    groups, at = [], 0
    for grp in grouped:
        groups.append(range(at, at + len(grp)))
        at += len(grp)
    group_slots = tuple(tuple(s for seg in grp for s in seg.slots) for grp in grouped)
    widest = max((len(s) for s in group_slots), default=1)
    if widest > MAX_GROUP_SLOTS:
        raise DataError(f"an entry group of the spec holds {widest} slots on CUDA; the "
                        f"kernels hold at most {MAX_GROUP_SLOTS}", where="spec",
                        hint="use fewer distinct (table, filter, weight) combinations")
    first_rows, total = [], 0
    for t in plan.tables:
        first_rows.append(total)
        total += t.num_rows
    if total > MAX_PACKED_ROWS:
        raise DataError(f"the spec's tables have {total:,} rows in all; the CUDA kernels "
                        "address at most 2^32 - 1", where="spec",
                        hint="declare fewer or smaller tables (rows 2^k)")
    return CudaLayout(
        plan=plan, tuning=tuning,
        mask_words=(len(plan.slots) + 63) // 64,
        row_functions=tuple(row_functions(plan)),
        weight_columns=weight_columns(plan),
        table_first_rows=tuple(first_rows), total_rows=total,
        dims_per_block=block_dims, dims_per_thread=per_thread,
        lanes=block_dims // per_thread, dim_blocks=D // block_dims,
        segments=tuple(seg for grp in grouped for seg in grp), groups=tuple(groups),
        group_slots=group_slots,
        staged_entries=max(tuning.staged_entries, sum(len(g) for g in grouped)),
        offset32=tuning.offset32 and total * D < 1 << 32,
    )
