"""The CUDA generator: a kernel plan as ``numba.cuda.jit`` kernels.

Each kernel does one thing with the access pattern a GPU wants:

* ``bounds`` (a thread per batch row): the row's band starts ``starts[b, 0..K]``;
* ``mark`` (a thread per event, coalesced column reads): every predicate once per event,
  written as the event's slot bits, its hashed rows (one per distinct row function) and its
  weights, at the event's batch position ``q``; ``mark_entries`` also writes the event's
  entries (a table row and the slot bits of one segment each) for the fused kernel;
* ``fused_entries`` (a block per (row, chunk of events, entry group, group of dims)): walks
  the chunk's entries, one row load per entry and one multiply-add per selected slot into
  accumulators in shared memory, and counts;
* ``tally`` (a thread per (row, chunk, slot); the lanes of a warp read the same bits):
  counts and weight sums per (row, chunk, slice), for the jagged output;
* ``fill`` (a thread per (row, chunk, slot)): the jagged output, at positions scanned from
  the tally.

``CUDA_FUSED_DESIGN = "dense"`` generates the earlier fused kernels instead (``fused0``,
``fused1``, ...: register accumulators, every slot of a table group tested per event, counts
from ``tally``); docs/kernels.md says why the entries design replaced it.

Arrays the hot kernels index are flat with strides fixed at generation time (tables packed
into one buffer at known row offsets, ``out`` as ``[B * S * D]``), and band flushes go through
shared memory in a loop: with a 2-D argument per table and one straight-line atomic per slice,
the first version of the fused kernel held ~200 flush addresses and the tables' strides in
registers (255 registers, 3.5 kB of spills, read off ``ptxas -v`` and the SASS).

The module constants below are the generator's switches; ``benchmarks/cuda_variants.py``
measures them against each other on a GPU and the simulator tests run each.

The same source runs on a GPU and in Numba's CUDA simulator (``simulator=True`` swaps the
bf16 widening and the wrapping 64-bit hash for simulator-safe forms).
"""

from __future__ import annotations

from dv365.kernels.plan import KernelPlan, PlanTable
from dv365.kernels.source import (
    bounds_fn, event_lines, header, helpers, indent, min_band, row_expr, row_fn_of,
    row_functions, weight_columns)

CUDA_CHUNK_FUSED = 2048  # events per block of the fused kernel
CUDA_TILE = 128  # events staged in shared memory at a time by the fused kernel
CUDA_MARK_THREADS = 128
PIPELINE = True  # issue the next event's table loads before adding the current event's rows
CUDA_SLOTS_PER_KERNEL = 24  # slots (register accumulators) per fused kernel
CUDA_MAX_REGISTERS = 0  # 0: let ptxas choose
CUDA_DIMS_PER_THREAD = 2  # dims a fused thread owns (1 or 2 measured equal on the H200)
# Counts and weight sums in the fused kernels (else the tally kernel): measured slower on
# the H200 (per-event, per-lane slot tests cost more than tally's separate pass).
CUDA_FUSED_COUNTS = False
# Events whose table loads a fused thread issues together before adding (1: the pipelined
# loop, next event's loads before the current event's adds).
CUDA_EVENTS_PER_STEP = 1
CUDA_DIMS_PER_BLOCK = 64  # dims a fused block covers (more dims: more blocks, grid z)
# "entries": ``mark`` writes each event's selected (table row, slot bits) entries and the
# fused kernel walks only those, accumulating in shared memory; "dense": every slot of a
# table group is tested for every event, accumulating in registers (the earlier design).
CUDA_FUSED_DESIGN = "entries"
CUDA_ENTRY_PREFETCH = 4  # entries whose table rows the entries kernel loads ahead
CUDA_ENTRY_TILE = 128  # events staged in shared memory at a time by the entries kernel
CUDA_ENTRY_CAP = 256  # entries staged at a time (a tile shrinks to fit)
SEGMENT_SLOTS = 20  # slots of one table per entry (bits 32..51 of an entry)
# Shared memory / L1 split asked for the fused kernels ("" leaves it to the driver).
CUDA_CARVEOUT = "MaxShared"
CUDA_ENTRY_COUNTS = True  # False only to measure what counting costs (counts come out 0)
CUDA_ENTRY_OFFSET32 = True  # 32-bit element offsets when the packed tables allow them
# Counts and weight sums in ``mark_entries`` (shared-memory atomics per block of events,
# then one global atomic per slice and block) instead of the fused kernel's slot loop.
CUDA_ENTRY_COUNTS_IN_MARK = False
# Slot groups of the entries kernel: a block holds one group's sums, so more groups, more
# blocks per SM (H200, reels.slice D=64: 1 group 58 ms, 2: 39, 3: 34, 4: 31, 6: 29, 8: 30).
# At least CUDA_ENTRY_GROUPS, and enough that a block's sums take at most
# CUDA_ENTRY_GROUP_BYTES (D=256 in 256-dim blocks: 8 groups).
CUDA_ENTRY_GROUPS = 4
CUDA_ENTRY_GROUP_BYTES = 10_000
# Dims per block of the entries kernel (a warp; D=256 in one block: 81 ms on the H200,
# in blocks of 128: 102 ms, of 64: 134 ms, each block walking the same entries).
CUDA_ENTRY_DIMS_PER_BLOCK = 256


def table_groups(plan: KernelPlan) -> list[list[PlanTable]]:
    """Tables split into groups of at most ``CUDA_SLOTS_PER_KERNEL`` slots (a table whole),
    one fused kernel each: a kernel holds a register per slot of its tables, and with all 73
    slots of reels.slice in one kernel (246 registers) the H200 ran it 1.3x slower than four
    kernels of about 128 registers."""
    used = [t for t in plan.tables if plan.slots_of_table(t.index)]
    total = sum(len(plan.slots_of_table(t.index)) for t in used)
    n = max(1, min(len(used), -(-total // CUDA_SLOTS_PER_KERNEL)))
    groups: list[list[PlanTable]] = [[] for _ in range(n)]
    load = [0] * n
    for t in sorted(used, key=lambda t: -len(plan.slots_of_table(t.index))):
        g = load.index(min(load))
        groups[g].append(t)
        load[g] += len(plan.slots_of_table(t.index))
    return [sorted(g, key=lambda t: t.index) for g in groups if g]


def dims_per_thread(dim: int) -> int:
    """Dims each fused thread owns. One thread's control work (entry decoding, slot bits, row
    addresses, band checks) then serves several dims. The entries kernel runs one warp per
    block, each thread owning ``block dims / 32`` (when 32 divides them); the dense kernels
    ``CUDA_DIMS_PER_THREAD`` when a block's dims split into whole warps that way; else 1."""
    db = dims_per_block(dim)
    if CUDA_FUSED_DESIGN == "entries":
        return db // 32 if db % 32 == 0 else 1
    v = CUDA_DIMS_PER_THREAD
    return v if db % (32 * v) == 0 else 1


def dims_per_block(dim: int) -> int:
    """Dims per fused block: all dims up to the design's cap (``CUDA_ENTRY_DIMS_PER_BLOCK`` or
    ``CUDA_DIMS_PER_BLOCK``), else the largest divisor of ``dim`` under it (a multiple of 32
    when there is one), so every thread owns real dimensions."""
    cap = CUDA_ENTRY_DIMS_PER_BLOCK if CUDA_FUSED_DESIGN == "entries" else CUDA_DIMS_PER_BLOCK
    if dim <= cap:
        return dim
    divisors = [x for x in range(cap, 0, -1) if dim % x == 0]
    return next((x for x in divisors if x % 32 == 0), divisors[0])


def layout(plan: KernelPlan) -> dict[str, int]:
    """Widths of the per-event arrays ``mark`` writes: 64-bit words of slot bits, rows (one
    per distinct row function) and weights (one per distinct weight expression)."""
    return {"words": (len(plan.slots) + 63) // 64,
            "rows": len(row_functions(plan)),
            "weights": len(weight_columns(plan))}


def table_offsets(plan: KernelPlan) -> list[int]:
    """First row of each table in the packed table buffer."""
    out, at = [], 0
    for t in plan.tables:
        out.append(at)
        at += t.num_rows
    return out


def _pieces(plan: KernelPlan) -> list[tuple[int, int, tuple[int, ...]]]:
    pieces = []
    for t in plan.tables:
        by_weight: dict[int, list[int]] = {}
        for sl in plan.slots_of_table(t.index):
            by_weight.setdefault(sl.weight, []).append(sl.index)
        for weight, slots in sorted(by_weight.items()):
            for at in range(0, len(slots), SEGMENT_SLOTS):
                pieces.append((t.index, weight, tuple(slots[at:at + SEGMENT_SLOTS])))
    if len(pieces) >= 1 << 11:
        raise ValueError(f"{len(pieces)} table segments; entries have room for 2047")
    return pieces


def entry_group_count(plan: KernelPlan) -> int:
    """How many slot groups the entries kernel splits a plan into (before capping at the
    number of segments)."""
    sums = len(plan.slots) * dims_per_block(plan.dim) * 4
    return max(CUDA_ENTRY_GROUPS, -(-sums // CUDA_ENTRY_GROUP_BYTES))


def _piece_groups(pieces: list, count: int) -> list[list[int]]:
    n = max(1, min(count, len(pieces)))
    groups: list[list[int]] = [[] for _ in range(n)]
    load = [0] * n
    for i in sorted(range(len(pieces)), key=lambda i: -len(pieces[i][2])):
        g = load.index(min(load))
        groups[g].append(i)
        load[g] += len(pieces[i][2])
    return [sorted(g) for g in groups if g]


def segments(plan: KernelPlan) -> list[tuple[int, int, tuple[int, ...]]]:
    """(table, weight expression or -1, slots) pieces of at most ``SEGMENT_SLOTS`` slots of
    one table and weight, group after group (:func:`segment_groups`): an entry names one
    segment, so its slot bits fit the entry's 20 bits and all its slots take one weight."""
    pieces = _pieces(plan)
    return [pieces[i] for group in _piece_groups(pieces, entry_group_count(plan))
            for i in group]


def segment_groups(plan: KernelPlan) -> list[range]:
    """The segments (indices into :func:`segments`) of each entry group: the groups split
    the slots about evenly, each with its own entries and a block per (row, chunk) that
    holds only its slots' accumulators, so more blocks fit an SM."""
    out, at = [], 0
    for group in _piece_groups(_pieces(plan), entry_group_count(plan)):
        out.append(range(at, at + len(group)))
        at += len(group)
    return out


def _elem(elem: str, index: str, array: str = "tab") -> str:
    if elem == "f32":
        return f"{array}[{index}]"
    if elem == "f16":
        return f"float32({array}[{index}])"
    return f"_bf16({array}[{index}])"


def _band_lines(K: int) -> list[str]:
    """``k``: the band of event ``i`` (starts of row ``b``)."""
    return [f"k = {K - 1}", "while k > 0 and i < starts[b, k]:", "    k -= 1"]


def _per_slot_prologue(N: int, K: int, chunk: str, nch: str) -> list[str]:
    """Prologue of the thread-per-(row, chunk, slot) kernels: lanes of a warp are slots of
    one chunk, so they read the same words of slot bits."""
    return [
        "    g = cuda.grid(1)",
        f"    s = g % {N}",
        f"    nch = {nch}",
        f"    b = g // {N} // nch",
        f"    ch = (g // {N}) % nch",
        "    if b >= starts.shape[0]:",
        "        return",
        f"    first = starts[b, 0] + ch * {chunk}",
        f"    stop = min(starts[b, {K}], first + {chunk})",
        "    if first >= stop:",
        "        return",
        "    q0 = base[b] - offsets[users[b]]",
        "    word = s // 64",
        "    bit = uint64(1) << uint64(s % 64)",
        "    wc = slot_wcol[s]",
    ]


def _fused_kernels(plan: KernelPlan, elem: str, wcol: dict, simulator: bool) -> list[str]:
    if CUDA_FUSED_DESIGN == "entries":
        return _entries_kernel(plan, elem, wcol, _fused_jit(simulator))
    src: list[str] = []
    rowfn = row_fn_of(plan)
    offs = table_offsets(plan)
    groups = table_groups(plan)
    src.append(f"FUSED_GROUPS = {len(groups)}")
    src.append("")
    for g, used in enumerate(groups):
        src += _fused_kernel(plan, elem, g, used, rowfn, offs, wcol, _fused_jit(simulator))
    return src


def _fused_jit(simulator: bool) -> str:
    if simulator or not CUDA_CARVEOUT:
        return "@cuda.jit"
    return f"@cuda.jit(shared_memory_carveout={CUDA_CARVEOUT!r})"


def _entries_kernel(plan: KernelPlan, elem: str, wcol: dict, jit: str) -> list[str]:
    """``fused_entries``: a block per (row, chunk of events, entry group and group of dims)
    walks the chunk's entries of its group newest first, each thread owning ``V`` dims of
    every slot's accumulator in shared memory; per entry one row load, per selected slot one
    multiply-add, so
    unselected tables and slots cost nothing. The rows of the next ``P`` entries are loaded
    before the current ones are added. Thread 0 of the blocks of dims ``[0, DB)`` also
    counts; the other threads count into a word of their own instead of branching.

    Indices are unsigned: Numba adds a negative-index wraparound to every signed index,
    which doubled the instructions per slot."""
    K, D, S = len(plan.windows), plan.dim, len(plan.slices)
    NWS = max(layout(plan)["weights"], 1)
    DB = dims_per_block(D)
    V = dims_per_thread(D)
    T = DB // V
    P = CUDA_ENTRY_PREFETCH
    segs = segments(plan)
    groups = segment_groups(plan)
    G, NZ = len(groups), D // DB
    # accumulator ls of group g holds slot group_slots[g][ls]
    group_slots = [[s for i in grp for s in segs[i][2]] for grp in groups]
    local = {s: j for slots in group_slots for j, s in enumerate(slots)}
    NL = max((len(x) for x in group_slots), default=1)
    bases = []
    for grp in groups:
        at = 0
        for i in grp:
            bases.append(at)
            at += len(segs[i][2])
    if NL >= 1 << 12:
        raise ValueError(f"{NL} slots in an entry group; staged entries have room for 4095")
    if sum(t.num_rows for t in plan.tables) >= 1 << 32:
        raise ValueError("the packed tables have 2^32 rows or more; entries hold 32-bit rows")
    # slices by (group, band): group g's band k is EBAND_*[EBAND_PTR[g * (K + 1) + k] ...]
    ptr, flat = [], []
    for slots in group_slots:
        mine = set(slots)
        for k in range(K):
            ptr.append(len(flat))
            flat += [sl for sl in plan.slices if sl.band == k and sl.slot in mine]
        ptr.append(len(flat))
    cap = max(CUDA_ENTRY_CAP, len(segs))
    src = [
        f"ENTRY_SEGMENTS = {len(segs)}",
        f"ENTRY_GROUPS = {G}",
        f"GROUP_SEG0 = np.array({[grp.start for grp in groups] or [0]}, np.int64)",
        f"SEG_BASE = np.array({bases or [0]}, np.uint32)",
        f"SEG_WCOL = np.array({[wcol.get(w, -1) for _, w, _ in segs] or [0]}, np.int32)",
        f"EBAND_PTR = np.array({ptr}, np.uint32)",
        f"EBAND_SLICE = np.array({[sl.index for sl in flat] or [0]}, np.uint32)",
        f"EBAND_LSLOT = np.array({[local[sl.slot] for sl in flat] or [0]}, np.uint32)",
        "",
    ]

    # Staging splits each entry into its row's first element (row * D, 32-bit when every
    # table element's offset fits: a load's address is then one multiply-add) and a word of
    # slot bits and first slot. Each thread indexes ``tabd``, the tables from its own dim.
    offset32 = CUDA_ENTRY_OFFSET32 and sum(t.num_rows for t in plan.tables) * D < 1 << 32
    off_t = "uint32" if offset32 else "uint64"

    def loads(u: int, j: str, x: str, en: str) -> list[str]:
        # an entry past the tile's start reads row 0: loads stay unconditional
        return [f"{en}{u} = soff[{j} - {u}] if {j} >= {u} else {off_t}(0)",
                *[f"{x}{u}_{v} = {_elem(elem, f'{en}{u} + {off_t}({T * v})', 'tabd')}"
                  for v in range(V)]]

    flush = [
        f"for jj in range(EBAND_PTR[g * {K + 1} + k], EBAND_PTR[g * {K + 1} + k + 1]):",
        f"    a = uint64(EBAND_LSLOT[jj]) * uint64({DB}) + tid",
        f"    o = ob + uint64(EBAND_SLICE[jj]) * uint64({D})",
        *[f"    cuda.atomic.add(out, o + uint64({T * v}), sacc[a + uint64({T * v})])"
          for v in range(V)],
        *([] if CUDA_ENTRY_COUNTS_IN_MARK else [
            "    if counting:",
            "        c = scnt[EBAND_LSLOT[jj]]",
            "        if c != 0:",
            "            cuda.atomic.add(counts, (b, EBAND_SLICE[jj]), c)",
            "            cuda.atomic.add(wsums, (b, EBAND_SLICE[jj]), sws[EBAND_LSLOT[jj]])"]),
    ]

    def consume(u: int) -> list[str]:
        return [
            f"if j >= {u}:",
            f"    if j - {u} < jl:",
            "        # leaving band k backwards: slices of window k have all their events",
            f"        while j - {u} < jl:",
            *indent(flush, 3),
            "            k -= 1",
            "            lim = starts[b, k]",
            "            jl = epos[g, q0 + lim] - e0 if lim > lo else -1",
            f"    w64 = sentw[j - {u}]",
            "    w = float32(w64)",
            f"    eb = sent[j - {u}]",
            "    bits = eb & uint32(0xFFFFF)",
            "    sb = uint64(eb >> uint32(20))",
            "    while bits != uint32(0):",
            "        ls = sb + uint64(cuda.ffs(bits) - 1)",
            "        bits = uint32(bits & (bits - uint32(1)))",
            f"        a = ls * uint64({DB}) + tid",
            *[f"        sacc[a + uint64({T * v})] += w * x{u}_{v}" for v in range(V)],
            # branch-free counting: thread 0 counts slot ls, the others into a word each
            *([f"        c = ls if counting else uint64({NL}) + tid",
               "        scnt[c] += 1",
               "        sws[c] += w64"]
              if CUDA_ENTRY_COUNTS and not CUDA_ENTRY_COUNTS_IN_MARK else []),
        ]

    # Staging resolves each entry's segment into its first slot and its weight (a thread
    # per event), so the walk reads both from the entry.
    stage = [
        "cuda.syncthreads()",
        f"lo = max(first, hi - {CUDA_ENTRY_TILE})",
        f"while epos[g, q0 + hi] - epos[g, q0 + lo] > {cap}:",
        "    lo = (lo + hi + 1) // 2",
        "cnt = hi - lo",
        "e0 = epos[g, q0 + lo]",
        "n = epos[g, q0 + hi] - e0",
        "ev = cuda.threadIdx.x",
        "while ev < cnt:",
        "    q = q0 + lo + ev",
        "    p = epos[g, q] - e0",
        "    for jj in range(epos[g, q + 1] - epos[g, q]):",
        "        en = ents[s0 + jj, q]",
        "        seg = en >> uint64(52)",
        "        wc = SEG_WCOL[seg]",
        f"        sentw[p + jj] = wvals[q * {NWS} + wc] if wc >= 0 else 1.0",
        f"        soff[p + jj] = {off_t}((en & uint64(0xFFFFFFFF)) * uint64({D}))",
        "        sent[p + jj] = uint32((en >> uint64(32)) & uint64(0xFFFFF)) | "
        "(SEG_BASE[seg] << uint32(20))",
        f"    ev += {T}",
        "jl = epos[g, q0 + lim] - e0 if lim > lo else -1",
        "cuda.syncthreads()",
    ]
    body = [
        jit,
        "def fused_entries(offsets, users, starts, base, epos, ents, wvals, tab, out, counts,",
        "                  wsums):",
        "    b = cuda.blockIdx.x",
        "    tid = uint64(cuda.threadIdx.x)",
        f"    g = cuda.blockIdx.z // {NZ}",
        f"    zd = cuda.blockIdx.z % {NZ}",
        "    s0 = GROUP_SEG0[g]",
        f"    d = uint64(zd * {DB}) + tid",
        f"    first = starts[b, 0] + cuda.blockIdx.y * {CUDA_CHUNK_FUSED}",
        f"    stop = min(starts[b, {K}], first + {CUDA_CHUNK_FUSED})",
        "    if first >= stop:",
        "        return",
        "    q0 = base[b] - offsets[users[b]]",
        "    counting = zd == 0 and cuda.threadIdx.x == 0",
        f"    ob = uint64(b * {S * D}) + d",
        f"    sacc = cuda.shared.array({max(NL, 1) * DB}, float32)",
        f"    scnt = cuda.shared.array({NL + T}, int32)",
        f"    sws = cuda.shared.array({NL + T}, float64)",
        f"    sent = cuda.shared.array({cap}, uint32)",
        f"    soff = cuda.shared.array({cap}, {off_t})",
        "    tabd = tab[d:]",
        f"    sentw = cuda.shared.array({cap}, float64)",
        f"    for ls in range({NL}):",
        *[f"        sacc[uint64(ls * {DB}) + tid + uint64({T * v})] = float32(0.0)"
          for v in range(V)],
        "        if counting:",
        "            scnt[ls] = 0",
        "            sws[ls] = 0.0",
        f"    scnt[{NL} + tid] = 0",
        f"    sws[{NL} + tid] = 0.0",
        "    i = stop - 1",
        *indent(_band_lines(K), 1),
        "    lim = starts[b, k]",
        "    hi = stop",
        "    while hi > first:",
        *indent(stage, 2),
        "        j = n - 1",
        *[ln for u in range(P) for ln in indent(loads(u, "j", "x", "en"), 2)],
        "        while j >= 0:",
        f"            jn = j - {P}",
        *[ln for u in range(P) for ln in indent(loads(u, "jn", "y", "nn"), 3)],
        *[ln for u in range(P) for ln in indent(consume(u), 3)],
        *[f"            x{u}_{v} = y{u}_{v}" for u in range(P) for v in range(V)],
        *[f"            en{u} = nn{u}" for u in range(P)],
        f"            j -= {P}",
        "        hi = lo",
        "    while k >= 0:",
        *indent(flush, 2),
        "        k -= 1",
        "",
    ]
    return src + body


def _fused_kernel(plan: KernelPlan, elem: str, g: int, used: list[PlanTable], rowfn: dict,
                  offs: list[int], wcol: dict, jit: str) -> list[str]:
    """The fused kernel of one group of tables, ``fused<g>``."""
    K, D, S = len(plan.windows), plan.dim, len(plan.slices)
    lay = layout(plan)
    W, R, NW = lay["words"], lay["rows"], lay["weights"]
    NWS = max(NW, 1)
    DB = dims_per_block(D)
    V = dims_per_thread(D)
    T = DB // V  # threads per block; thread tid owns dims d + T * v, v < V (coalesced)
    slots = {sl.index for t in used for sl in plan.slots_of_table(t.index)}

    def table_test(t: PlanTable, m: str) -> str:
        words: dict[int, int] = {}
        for sl in plan.slots_of_table(t.index):
            words[sl.index // 64] = words.get(sl.index // 64, 0) | (1 << (sl.index % 64))
        return " | ".join(f"({m}{w} & uint64({bits}))" for w, bits in sorted(words.items()))

    def loads(e: str, m: str, x: str) -> list[str]:
        # Unselected tables read their row 0 (cached) instead of branching: a load under a
        # branch cannot be issued before the branch, and the point is to have all of an
        # event's rows in flight at once.
        out = [f"{m}{w} = sm[uint64({e} * {W} + {w})]" for w in range(W)]
        for t in used:
            out.append(f"r = sr[uint64({e} * {R} + {rowfn[t.index]})] "
                       f"if ({table_test(t, m)}) != 0 else 0")
            out.append(f"o = uint64(({offs[t.index]} + r) * {D} + d)")
            out += [f"{x}{t.index}_{v} = {_elem(elem, f'o + {T * v}')}" for v in range(V)]
        return out

    def accumulate(m: str, x: str, e: str) -> list[str]:
        """Add event ``e``'s rows (``x<table>_<v>``) into the slots its bits ``m<w>`` select."""
        out = []
        for t in used:
            out.append(f"if ({table_test(t, m)}) != 0:")
            for sl in plan.slots_of_table(t.index):
                test = f"({m}{sl.index // 64} & uint64({1 << (sl.index % 64)})) != 0"
                out.append(f"    if {test}:")
                if sl.weight >= 0:
                    out.append(f"        w = sw[uint64({e} * {NWS} + {wcol[sl.weight]})]")
                    out += [f"        a{sl.index}_{v} += w * {x}{t.index}_{v}" for v in range(V)]
                else:
                    out += [f"        a{sl.index}_{v} += {x}{t.index}_{v}" for v in range(V)]
        return out

    acc = accumulate("m", "x", "e")

    # Flushes go through shared memory and a loop over the band's slices: straight-line
    # atomics (one per slice) had ptxas compute every slice's address at once, and that
    # peak, not the accumulators, set the kernel's register count (254).
    local = {s: j for j, s in enumerate(sorted(slots))}
    by_band = [[sl for sl in plan.slices if sl.band == k and sl.slot in slots] for k in range(K)]
    ptr = [0]
    for band in by_band:
        ptr.append(ptr[-1] + len(band))
    flat = [sl for band in by_band for sl in band]
    # Counting: in the blocks of dims [0, DB) only, thread tid counts the group's local
    # slots tid, tid + T, ... (running counts and weight sums, flushed like the sums).
    order = sorted(slots)
    U = -(-len(order) // T)
    tables_src = [
        f"CNT_WORD{g} = np.array({[s // 64 for s in order]}, np.int64)",
        f"CNT_SHIFT{g} = np.array({[s % 64 for s in order]}, np.uint64)",
        f"CNT_WCOL{g} = np.array({[wcol.get(plan.slots[s].weight, -1) for s in order]}, np.int64)",
        f"BAND_LS{g} = np.array({[local[sl.slot] for sl in flat] or [0]}, np.int64)",
        f"BAND_SL{g} = np.array({[sl.index for sl in flat] or [0]}, np.int64)",
        f"BAND_PTR{g} = np.array({ptr}, np.int64)",
        f"BAND_SLICE{g} = np.array({[sl.index * D for sl in flat] or [0]}, np.int64)",
        f"BAND_SLOT{g} = np.array({[local[sl.slot] * DB for sl in flat] or [0]}, np.int64)",
        "",
    ]
    flushes = [
        *[f"sacc[{local[s] * DB + T * v} + tid] = a{s}_{v}" for s in sorted(slots)
          for v in range(V)],
        "ob = sob[0] + d",
        f"for j in range(BAND_PTR{g}[k], BAND_PTR{g}[k + 1]):",
        *[f"    cuda.atomic.add(out, uint64(ob + BAND_SLICE{g}[j] + {T * v}), "
          f"sacc[BAND_SLOT{g}[j] + tid + {T * v}])" for v in range(V)],
        *(["    if counting:"] if CUDA_FUSED_COUNTS else []),
        *[line for u in range(U if CUDA_FUSED_COUNTS else 0) for line in (
            f"        if BAND_LS{g}[j] == ls{u}:",
            f"            cuda.atomic.add(counts, (b, BAND_SL{g}[j]), c{u})",
            f"            if wc{u} >= 0:",
            f"                cuda.atomic.add(wsums, (b, BAND_SL{g}[j]), ws{u})")],
    ]
    count_init = ["counting = cuda.blockIdx.z == 0"] if CUDA_FUSED_COUNTS else []
    count_step = ["if counting:"] if CUDA_FUSED_COUNTS else []
    for u in range(U if CUDA_FUSED_COUNTS else 0):
        count_init += [
            f"ls{u} = tid + {T * u}",
            f"c{u} = int32(0)",
            f"ws{u} = 0.0",
            f"cw{u} = CNT_WORD{g}[ls{u}] if ls{u} < {len(order)} else 0",
            f"cs{u} = CNT_SHIFT{g}[ls{u}] if ls{u} < {len(order)} else uint64(0)",
            f"wc{u} = CNT_WCOL{g}[ls{u}] if ls{u} < {len(order)} else -1",
            f"if ls{u} >= {len(order)}:",
            f"    ls{u} = -1",
        ]
        pick = (f"({' '.join(f'm{w} if cw{u} == {w} else' for w in range(W - 1))} m{W - 1})"
                if W > 1 else "m0")
        count_step += [
            f"    if ls{u} >= 0 and (({pick} >> cs{u}) & uint64(1)) != 0:",
            f"        c{u} += 1",
            f"        if wc{u} >= 0:",
            f"            ws{u} += sw64[uint64(e * {NWS}) + uint64(wc{u})]",
        ]
    stage = [
        "cuda.syncthreads()",
        f"j = tid",
        f"while j < cnt * {W}:",
        f"    sm[j] = masks[uint64((q0 + lo) * {W} + j)]",
        f"    j += {T}",
        "j = tid",
        f"while j < cnt * {R}:",
        f"    sr[j] = rows[uint64((q0 + lo) * {R} + j)]",
        f"    j += {T}",
    ]
    if NW:
        stage += [
            "j = tid",
            f"while j < cnt * {NWS}:",
            f"    sw64[j] = wvals[uint64((q0 + lo) * {NWS} + j)]",
            f"    sw[j] = float32(sw64[j])",
            f"    j += {T}",
        ]
    stage.append("cuda.syncthreads()")
    E = CUDA_EVENTS_PER_STEP

    def stepped() -> list[str]:
        # E events per step: all their table loads first (E events' rows in flight per
        # warp), then each event's band check and adds, newest first.
        out = ["while e >= 0:"]
        for j in range(E):
            out += [f"    e{j} = e - {j}" if j else "    e0 = e",
                    f"    c{j} = e{j} if e{j} >= 0 else 0"]
            lines = loads(f"c{j}", f"m{j}_", f"x{j}_")
            # an event before the tile reads nothing: no bits, so row 0 of every table
            lines = [ln if not ln.startswith(f"m{j}_") else
                     ln.replace(" = sm[", f" = uint64(0) if e{j} < 0 else sm[") for ln in lines]
            out += indent(lines, 1)
        for j in range(E):
            out += [
                f"    if e{j} >= 0:",
                f"        if lo + e{j} < lim:",
                f"            while lo + e{j} < lim:",
                *indent(flushes, 4),
                "                k -= 1",
                "                lim = starts[b, k]",
                *indent(accumulate(f"m{j}_", f"x{j}_", f"e{j}"), 2),
            ]
        out.append(f"    e -= {E}")
        return indent(out, 2)

    if CUDA_MAX_REGISTERS:
        jit = (jit[:-1] + f", max_registers={CUDA_MAX_REGISTERS})" if jit.endswith(")")
               else f"@cuda.jit(max_registers={CUDA_MAX_REGISTERS})")
    return tables_src + [
        jit,
        f"def fused{g}(offsets, users, starts, base, masks, wvals, rows, tab, out, counts,",
        "            wsums):",
        "    b = cuda.blockIdx.x",
        "    tid = cuda.threadIdx.x",
        f"    d = cuda.blockIdx.z * {DB} + tid",
        f"    first = starts[b, 0] + cuda.blockIdx.y * {CUDA_CHUNK_FUSED}",
        f"    stop = min(starts[b, {K}], first + {CUDA_CHUNK_FUSED})",
        "    if first >= stop:",
        "        return",
        "    q0 = base[b] - offsets[users[b]]",
        f"    sm = cuda.shared.array({CUDA_TILE * W}, uint64)",
        f"    sr = cuda.shared.array({CUDA_TILE * R}, int32)",
        f"    sw = cuda.shared.array({CUDA_TILE * NWS}, float32)",
        f"    sw64 = cuda.shared.array({CUDA_TILE * NWS}, float64)",
        "    sob = cuda.shared.array(1, int64)",
        f"    sacc = cuda.shared.array({max(len(slots), 1) * DB}, float32)",
        "    if tid == 0:",
        f"        sob[0] = b * {S * D}",
        *[f"    a{s}_{v} = float32(0.0)" for s in sorted(slots) for v in range(V)],
        *indent(count_init, 1),
        "    i = stop - 1",
        *indent(_band_lines(K), 1),
        "    lim = starts[b, k]",
        "    hi = stop",
        "    while hi > first:",
        f"        lo = max(first, hi - {CUDA_TILE})",
        "        cnt = hi - lo",
        *indent(stage, 2),
        "        e = cnt - 1",
        *(stepped() if E > 1 else [
        *(indent(loads("e", "m", "x"), 2) if PIPELINE else []),
        "        while e >= 0:",
        "            if lo + e < lim:",
        "                # leaving band k backwards: slices of window k have all their events",
        "                while lo + e < lim:",
        *indent(flushes, 5),
        "                    k -= 1",
        "                    lim = starts[b, k]",
        *(["            en = e - 1 if e > 0 else 0", *indent(loads("en", "n", "y"), 3)]
          if PIPELINE else indent(loads("e", "m", "x"), 3)),
        *indent(acc, 3),
        *indent(count_step, 3),
        *([f"            x{t.index}_{v} = y{t.index}_{v}" for t in used for v in range(V)]
          + [f"            m{w} = n{w}" for w in range(W)] if PIPELINE else []),
        "            e -= 1"]),
        "        hi = lo",
        "    while k >= 0:",
        *indent(flushes, 2),
        "        k -= 1",
        "",
    ]


def _mark_kernel(plan: KernelPlan, entries: bool) -> list[str]:
    """``mark`` (a thread per event): slot bits, rows, weights; ``mark_entries`` also writes
    the event's entries for the entries kernel: one uint64 per segment the event selects,
    ``packed row | slot bits << 32 | segment << 52``, as ``ents[s0 + j, q]`` (its j-th in
    the entry group whose segments start at s0; the threads of a warp, consecutive events,
    write consecutive words) and their number per group ``nsel[group, q]``."""
    K = len(plan.windows)
    lay = layout(plan)
    W, R, NWS = lay["words"], lay["rows"], max(lay["weights"], 1)
    wcol = weight_columns(plan)
    cols = ", ".join(f"c_{c}" for c in plan.columns)
    N = len(plan.slots)
    counting = entries and CUDA_ENTRY_COUNTS_IN_MARK
    body = [f"m{w} = uint64(0)" for w in range(W)]
    for s in plan.slots:
        low = min_band(plan, s.index)
        body.append(f"if p{s.index}:")
        body.append(f"    m{s.index // 64} |= uint64({1 << (s.index % 64)})")
        if s.weight >= 0:
            body.append(f"    w = e{s.weight}")
            body.append(f"    if not (w > 0.0 and w < math.inf) and k >= {low}:")
            body.append(f"        bad[b] = {s.index + 1}")
        if counting:
            body.append(f"    if k >= {low}:")
            body.append(f"        cuda.atomic.add(mc, {s.index * K} + k, 1)")
            if s.weight >= 0:
                body.append(f"        cuda.atomic.add(mw, {s.index * K} + k, w)")
    body.append("q = base[b] + i - offsets[users[b]]")
    body += [f"masks[q * {W} + {w}] = m{w}" for w in range(W)]
    # Rows once per event and distinct row function: 64-bit hashing and modulo are costly
    # on a GPU, and the fused kernel's D threads would each repeat them.
    for j, (col, hashing, seed, n) in enumerate(row_functions(plan)):
        fake = PlanTable(-1, "", col, n, 0, hashing, seed)
        body.append(f"r{j} = int32({row_expr(fake, f'c_{col}[i]')})")
        body.append(f"rows[q * {R} + {j}] = r{j}")
    body += [f"wvals[q * {NWS} + {j}] = e{e}" for e, j in wcol.items()]
    args = "base, bad, masks, wvals, rows"
    if entries:
        args += ", nsel, ents"
        rowfn, offs = row_fn_of(plan), table_offsets(plan)
        segs = segments(plan)
        for grp_index, grp in enumerate(segment_groups(plan)):
            body.append(f"n = {grp.start}")
            for g in grp:
                t, _, slots = segs[g]
                # slots whose slices all have windows skip events older than the widest
                terms = []
                for j, sl in enumerate(slots):
                    low = min_band(plan, sl)
                    test = f"p{sl}" if low == 0 else f"(p{sl} and k >= {low})"
                    terms.append(f"(int64({test}) << {j})")
                body.append(f"sb = {' | '.join(terms)}")
                body.append("if sb != 0:")
                body.append(f"    ents[n, q] = (uint64({offs[t]} + r{rowfn[t]}) | "
                            f"(uint64(sb) << uint64(32)) | uint64({g << 52}))")
                body.append("    n += 1")
            body.append(f"nsel[{grp_index}, q] = n - {grp.start}")
    head = [
        "@cuda.jit",
        f"def {'mark_entries' if entries else 'mark'}(offsets, users, starts, {cols}, {args}"
        + (", counts, wsums):" if counting else "):"),
        "    b = cuda.blockIdx.x",
        "    i = starts[b, 0] + cuda.blockIdx.y * cuda.blockDim.x + cuda.threadIdx.x",
    ]
    if not counting:
        return head + [
            f"    if i >= starts[b, {K}]:",
            "        return",
            *indent(_band_lines(K), 1),
            *indent(event_lines(plan, cuda=True) + body, 1),
            "",
        ]
    # the block's events (all of row b) count per (slot, band) in shared memory; a slice
    # of band j then adds the counts of bands j.. (its window holds the newer bands)
    slot_of = [sl.slot for sl in plan.slices]
    band_of = [sl.band for sl in plan.slices]
    return [
        f"MARK_SLICE_SLOT = np.array({slot_of or [0]}, np.int64)",
        f"MARK_SLICE_BAND = np.array({band_of or [0]}, np.int64)",
        "",
        *head,
        f"    mc = cuda.shared.array({max(N * K, 1)}, int32)",
        f"    mw = cuda.shared.array({max(N * K, 1)}, float64)",
        "    j = cuda.threadIdx.x",
        f"    while j < {N * K}:",
        "        mc[j] = 0",
        "        mw[j] = 0.0",
        f"        j += {CUDA_MARK_THREADS}",
        "    cuda.syncthreads()",
        f"    if i < starts[b, {K}]:",
        *indent(_band_lines(K), 2),
        *indent(event_lines(plan, cuda=True) + body, 2),
        "    cuda.syncthreads()",
        "    j = cuda.threadIdx.x",
        f"    while j < {len(plan.slices)}:",
        "        s = MARK_SLICE_SLOT[j]",
        "        c = 0",
        "        ws = 0.0",
        f"        for kk in range(MARK_SLICE_BAND[j], {K}):",
        f"            c += mc[s * {K} + kk]",
        f"            ws += mw[s * {K} + kk]",
        "        if c != 0:",
        "            cuda.atomic.add(counts, (b, j), c)",
        "            cuda.atomic.add(wsums, (b, j), ws)",
        f"        j += {CUDA_MARK_THREADS}",
        "",
    ]


def generate(plan: KernelPlan, elem: str, simulator: bool) -> str:
    K, D, S, N = len(plan.windows), plan.dim, len(plan.slices), len(plan.slots)
    lay = layout(plan)
    W, R, NW = lay["words"], lay["rows"], lay["weights"]
    NWS = max(NW, 1)
    DB = dims_per_block(D)
    dev = "@cuda.jit(device=True, inline=True)"

    src = header(plan, "cuda") + ["from numba import cuda", ""]
    if simulator:
        src += ["def _bf16(x):",
                "    return np.array([np.uint32(x) << np.uint32(16)], np.uint32)"
                ".view(np.float32)[0]", ""]
    else:
        src += ["from numba.cuda import libdevice", "", dev, "def _bf16(x):",
                "    return libdevice.int_as_float(int32(x) << 16)", ""]
    helper_lines = helpers(dev)
    if simulator:
        # The simulator multiplies NumPy uint64 scalars, which warn on the intended wrap.
        helper_lines = [line.replace("def _hash_row(z, n):",
                                "def _hash_row(z, n):\n    with np.errstate(over='ignore'):\n"
                                "        return _hash_row_wrapping(z, n)\n\n\n"
                                "def _hash_row_wrapping(z, n):") for line in helper_lines]
    src += helper_lines
    src += bounds_fn(plan, dev) + [""]
    src += [
        "@cuda.jit",
        "def bounds(offsets, users, request_ts, ts, starts):",
        "    b = cuda.grid(1)",
        "    if b < users.shape[0]:",
        "        _bounds(offsets, ts, users[b], request_ts[b], starts[b])",
        "",
    ]

    src += _mark_kernel(plan, entries=False)
    if CUDA_FUSED_DESIGN == "entries":
        src += _mark_kernel(plan, entries=True)
    wcol = weight_columns(plan)

    # tally ----------------------------------------------------------------------------
    flush = [
        "for j in range(slot_ptr[s], slot_ptr[s + 1]):",
        "    if slice_band[j] == k:",
        "        counts[b, ch, slot_slices[j]] = n",
        "        if wc >= 0:",
        "            wsums[b, ch, slot_slices[j]] = wsum",
    ]
    src += [
        "@cuda.jit",
        "def tally(offsets, users, starts, base, masks, wvals, slot_ptr, slot_slices,",
        "          slice_band, slot_wcol, chunk, counts, wsums):",
        *_per_slot_prologue(N, K, "chunk", "counts.shape[1]"),
        "    i = stop - 1",
        *indent(_band_lines(K), 1),
        "    lim = starts[b, k]",
        "    n = 0",
        "    wsum = 0.0",
        "    while i >= first:",
        "        while i < lim:",
        *indent(flush, 3),
        "            k -= 1",
        "            lim = starts[b, k]",
        f"        if (masks[uint64((q0 + i) * {W} + word)] & bit) != 0:",
        "            n += 1",
        "            if wc >= 0:",
        f"                wsum += wvals[uint64((q0 + i) * {NWS} + wc)]",
        "        i -= 1",
        "    while k >= 0:",
        *indent(flush, 2),
        "        k -= 1",
        "",
    ]

    src += _fused_kernels(plan, elem, wcol, simulator)

    # fill -----------------------------------------------------------------------------
    src += [
        "@cuda.jit",
        "def fill(offsets, users, starts, base, masks, wvals, rows, slot_ptr, slot_slices,",
        "         slice_band, slice_pool, slot_wcol, slot_row, chunk, pos, totals, wtotals,",
        "         values, weights):",
        *_per_slot_prologue(N, K, "chunk", "pos.shape[1]"),
        "    rf = slot_row[s]",
        "    i = first",
        *indent(_band_lines(K), 1),
        "    for i in range(first, stop):",
        f"        while k < {K - 1} and i >= starts[b, k + 1]:",
        "            k += 1",
        "        qq = q0 + i",
        f"        if (masks[qq * {W} + word] & bit) != 0:",
        f"            r = rows[qq * {R} + rf]",
        f"            w = wvals[qq * {NWS} + wc] if wc >= 0 else 1.0",
        "            for j in range(slot_ptr[s], slot_ptr[s + 1]):",
        "                if slice_band[j] <= k:",
        "                    sl = slot_slices[j]",
        "                    p = pos[b, ch, sl]",
        "                    values[p] = r",
        "                    if slice_pool[j] == 0:",
        "                        weights[p] = 1.0 / totals[b, sl]",
        "                    elif slice_pool[j] == 1:",
        "                        weights[p] = w / wtotals[b, sl]",
        "                    else:",
        "                        weights[p] = w",
        "                    pos[b, ch, sl] = p + 1",
        "",
    ]
    return "\n".join(src) + "\n"
