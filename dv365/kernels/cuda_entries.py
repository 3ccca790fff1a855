"""The CUDA fused pooling kernel of the entries design (``CUDA_FUSED_DESIGN = "entries"``).

``mark_entries`` (in :mod:`dv365.kernels.cuda_source`) lists each event's entries: one per
*segment* it selects, a segment being up to ``SEGMENT_SLOTS`` slots of one table and one
weight. This module splits a plan into segments and entry groups and generates
``fused_entries``, which walks the entries: one row load per entry, one multiply-add per
selected slot, accumulators in shared memory. The switches it reads are module constants of
:mod:`dv365.kernels.cuda_source`, read when a kernel is generated.
"""

from __future__ import annotations

from dv365.errors import DataError
from dv365.kernels import cuda_source as cs
from dv365.kernels.plan import KernelPlan
from dv365.kernels.source import indent


def _pieces(plan: KernelPlan) -> list[tuple[int, int, tuple[int, ...]]]:
    pieces = []
    for t in plan.tables:
        by_weight: dict[int, list[int]] = {}
        for sl in plan.slots_of_table(t.index):
            by_weight.setdefault(sl.weight, []).append(sl.index)
        for weight, slots in sorted(by_weight.items()):
            for at in range(0, len(slots), cs.SEGMENT_SLOTS):
                pieces.append((t.index, weight, tuple(slots[at:at + cs.SEGMENT_SLOTS])))
    if len(pieces) >= 1 << 11:
        raise DataError(f"{len(pieces)} table segments; the CUDA entries kernel has room "
                        "for 2047", where="spec",
                        hint="use CUDA_FUSED_DESIGN = 'dense' or fewer slots")
    return pieces


def entry_group_count(plan: KernelPlan) -> int:
    """How many slot groups the entries kernel splits a plan into (before capping at the
    number of segments)."""
    sums = len(plan.slots) * cs.dims_per_block(plan.dim) * 4
    return max(cs.CUDA_ENTRY_GROUPS, -(-sums // cs.CUDA_ENTRY_GROUP_BYTES))


def _grouped(plan: KernelPlan) -> list[list[tuple[int, int, tuple[int, ...]]]]:
    """The segments of each entry group: pieces dealt largest first to the group with the
    fewest slots so far, each group in table order."""
    pieces = _pieces(plan)
    n = max(1, min(entry_group_count(plan), len(pieces)))
    walkers = cs.entry_walkers(plan.dim)
    n = -(-n // walkers) * walkers  # a block's walkers take whole groups (some may be empty)
    groups: list[list[int]] = [[] for _ in range(n)]
    load = [0] * n
    for i in sorted(range(len(pieces)), key=lambda i: -len(pieces[i][2])):
        g = load.index(min(load))
        groups[g].append(i)
        load[g] += len(pieces[i][2])
    return [[pieces[i] for i in sorted(g)] for g in groups]


def segments(plan: KernelPlan) -> list[tuple[int, int, tuple[int, ...]]]:
    """(table, weight expression or -1, slots) pieces of at most ``SEGMENT_SLOTS`` slots of
    one table and weight, group after group (:func:`segment_groups`): an entry names one
    segment, so its slot bits fit the entry's 20 bits and all its slots take one weight."""
    return [piece for group in _grouped(plan) for piece in group]


def segment_groups(plan: KernelPlan) -> list[range]:
    """The segments (indices into :func:`segments`) of each entry group: the groups split
    the slots about evenly, each with its own entries and a block per (row, chunk) that
    holds only its slots' accumulators, so more blocks fit an SM."""
    out, at = [], 0
    for group in _grouped(plan):
        out.append(range(at, at + len(group)))
        at += len(group)
    return out


def fused_source(plan: KernelPlan, elem: str, wcol: dict, jit: str) -> list[str]:
    """``fused_entries``: a block (one warp) per (row, chunk of events, entry group and group
    of dims) walks the chunk's entries of its group newest first, each thread owning ``V``
    dims of every slot's accumulator in shared memory; per entry one row load, per selected
    slot one multiply-add, so unselected tables and slots cost nothing. The rows of the next
    ``P`` entries are loaded before the current ones are added. With
    ``CUDA_ENTRY_WALKERS`` > 1 the warp's lanes split between that many groups, each walking
    its own. The blocks of dims ``[0, DB)`` count unless ``mark_entries`` does
    (``CUDA_ENTRY_COUNTING``).

    Indices are unsigned: Numba adds a negative-index wraparound to every signed index,
    which doubled the instructions per slot."""
    K, D, S = len(plan.windows), plan.dim, len(plan.slices)
    NWS = max(cs.layout(plan)["weights"], 1)
    DB = cs.dims_per_block(D)
    V = cs.dims_per_thread(D)
    L = DB // V  # lanes of a walker
    P = cs.CUDA_ENTRY_PREFETCH
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
        raise DataError(f"{NL} slots in an entry group; staged entries have room for 4095",
                        where="spec", hint="raise CUDA_ENTRY_GROUPS")
    total_rows = sum(t.num_rows for t in plan.tables)
    if total_rows >= 1 << 32:
        raise DataError("the packed tables have 2^32 rows or more; entries hold 32-bit rows",
                        where="spec", hint="use fewer or smaller tables")
    # slices by (group, band): group g's band k is EBAND_*[EBAND_PTR[g * (K + 1) + k] ...]
    ptr, flat = [], []
    for slots in group_slots:
        mine = set(slots)
        for k in range(K):
            ptr.append(len(flat))
            flat += [sl for sl in plan.slices if sl.band == k and sl.slot in mine]
        ptr.append(len(flat))
    cap = max(cs.CUDA_ENTRY_CAP, len(segs))
    # A block's warp walks H groups at once, walker h (lanes [h * L, h * L + L)) group
    # z * H + h with its own accumulators, counters and staged entries in shared memory.
    H = cs.entry_walkers(D)
    counting = cs.CUDA_ENTRY_COUNTING if cs.CUDA_ENTRY_COUNTS else ""
    # Without counting here a block needs neither counters nor float64 weights: the shared
    # memory they took (1.6 kB of 9 at D=64) is resident blocks.
    here = counting in ("slot_loop", "lanes")
    wt = "float64" if here else "float32"
    if counting == "lanes" and H > 1:
        raise ValueError("CUDA_ENTRY_COUNTING = 'lanes' needs CUDA_ENTRY_WALKERS = 1")
    src = [
        f"ENTRY_SEGMENTS = {len(segs)}",
        f"ENTRY_GROUPS = {G}",
        f"ENTRY_BLOCKS_Z = {G // H * NZ}",
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
    offset32 = cs.CUDA_ENTRY_OFFSET32 and total_rows * D < 1 << 32
    off_t = "uint32" if offset32 else "uint64"

    def loads(u: int, j: str, x: str, en: str) -> list[str]:
        # an entry past the tile's start reads row 0: loads stay unconditional
        return [f"{en}{u} = soff[eb0 + {j} - {u}] if {j} >= {u} else {off_t}(0)",
                *[f"{x}{u}_{v} = {cs._elem(elem, f'{en}{u} + {off_t}({L * v})', 'tabd')}"
                  for v in range(V)]]

    flush = [
        # (a block is one warp) the lanes' counts of the band are in before lane 0 reads
        *(["cuda.syncthreads()"] if counting == "lanes" else []),
        f"for jj in range(EBAND_PTR[g * {K + 1} + k], EBAND_PTR[g * {K + 1} + k + 1]):",
        f"    a = ab + uint64(EBAND_LSLOT[jj]) * uint64({DB})",
        f"    o = ob + uint64(EBAND_SLICE[jj]) * uint64({D})",
        *[f"    cuda.atomic.add(out, o + uint64({L * v}), sacc[a + uint64({L * v})])"
          for v in range(V)],
        *([] if counting in ("mark", "") else [
            "    if counting and tid == 0:",
            "        c = scnt[cb + EBAND_LSLOT[jj]]",
            "        if c != 0:",
            "            cuda.atomic.add(counts, (b, EBAND_SLICE[jj]), c)",
            "            cuda.atomic.add(wsums, (b, EBAND_SLICE[jj]), sws[cb + EBAND_LSLOT[jj]])"]),
        # ... and lane 0 has read them before the lanes count the next band's
        *(["cuda.syncthreads()"] if counting == "lanes" else []),
    ]

    # ``cbit``: the slot bit a lane counts (0 in blocks that do not count)
    if L >= cs.SEGMENT_SLOTS:
        lane_count = ["    if uint32(eb & cbit) != uint32(0):",
                      "        c = cb + sb + tid",
                      "        scnt[c] += 1",
                      "        sws[c] += w64"]
    else:  # fewer lanes than slot bits: each counts every L-th bit
        lane_count = ["    cm = cbit",
                      "    c = cb + sb + tid",
                      "    while cm != uint32(0):",
                      "        if uint32(eb & cm) != uint32(0):",
                      "            scnt[c] += 1",
                      "            sws[c] += w64",
                      # past the slot bits (bit 20 on holds the slot base): done
                      f"        cm = uint32(cm << uint32({L})) & uint32(0xFFFFF)",
                      f"        c += uint64({L})"]

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
            f"    w64 = sentw[eb0 + j - {u}]",
            "    w = float32(w64)" if here else "    w = w64",
            f"    eb = sent[eb0 + j - {u}]",
            "    bits = eb & uint32(0xFFFFF)",
            "    sb = uint64(eb >> uint32(20))",
            "    while bits != uint32(0):",
            "        ls = sb + uint64(cuda.ffs(bits) - 1)",
            "        bits = uint32(bits & (bits - uint32(1)))",
            f"        a = ab + ls * uint64({DB})",
            *[f"        sacc[a + uint64({L * v})] += w * x{u}_{v}" for v in range(V)],
            # branch-free counting: lane 0 counts slot ls, the others into a word each
            *([f"        c = cb + (ls if counting and tid == 0 else uint64({NL}) + tid)",
               "        scnt[c] += 1",
               "        sws[c] += w64"]
              if counting == "slot_loop" else []),
            # lane l counts the entry's slot bit l: one pass per entry, not per slot
            *(lane_count if counting == "lanes" else []),
        ]

    # Staging resolves each entry's segment into its first slot and its weight (a lane per
    # event), so the walk reads both from the entry. The tile is the block's: the walkers'
    # walks are apart, their stages (between barriers) together.
    stage = [
        "cuda.syncthreads()",
        f"lo = max(first, hi - {cs.CUDA_ENTRY_TILE})",
        f"for hh in range({H}):",
        f"    gg = gp * {H} + hh",
        f"    while epos[gg, q0 + hi] - epos[gg, q0 + lo] > {cap}:",
        "        lo = (lo + hi + 1) // 2",
        "cnt = hi - lo",
        "e0 = epos[g, q0 + lo]",
        "n = epos[g, q0 + hi] - e0",
        f"ev = int64(tid)",
        "while ev < cnt:",
        "    q = q0 + lo + ev",
        "    p = eb0 + epos[g, q] - e0",
        "    for jj in range(epos[g, q + 1] - epos[g, q]):",
        "        en = ents[s0 + jj, q]",
        "        seg = en >> uint64(52)",
        "        wc = SEG_WCOL[seg]",
        f"        sentw[p + jj] = wvals[q * {NWS} + wc] if wc >= 0 else 1.0",
        f"        soff[p + jj] = {off_t}((en & uint64(0xFFFFFFFF)) * uint64({D}))",
        "        sent[p + jj] = uint32((en >> uint64(32)) & uint64(0xFFFFF)) | "
        "(SEG_BASE[seg] << uint32(20))",
        f"    ev += {L}",
        "jl = epos[g, q0 + lim] - e0 if lim > lo else -1",
        "cuda.syncthreads()",
    ]
    body = [
        jit,
        "def fused_entries(offsets, users, starts, base, epos, ents, wvals, tab, out, counts,",
        "                  wsums):",
        "    b = cuda.blockIdx.x",
        # unsigned: a signed modulo costs a sign correction each time it is recomputed
        f"    h = uint64(cuda.threadIdx.x) // uint64({L})",
        f"    tid = uint64(cuda.threadIdx.x) % uint64({L})",
        f"    gp = cuda.blockIdx.z // {NZ}",
        f"    zd = cuda.blockIdx.z % {NZ}",
        f"    g = gp * {H} + int64(h)",
        "    s0 = GROUP_SEG0[g]",
        f"    d = uint64(zd * {DB}) + tid",
        f"    first = starts[b, 0] + cuda.blockIdx.y * {cs.CUDA_CHUNK_FUSED}",
        f"    stop = min(starts[b, {K}], first + {cs.CUDA_CHUNK_FUSED})",
        "    if first >= stop:",
        "        return",
        "    q0 = base[b] - offsets[users[b]]",
        "    counting = zd == 0",
        *([f"    cbit = uint32(uint32(1) << uint32(tid)) if counting and "
           f"tid < uint64({cs.SEGMENT_SLOTS}) else uint32(0)"] if counting == "lanes" else []),
        f"    ob = uint64(b * {S * D}) + d",
        # the walker's accumulators, counters and staged entries
        f"    ab = uint64(h * {max(NL, 1) * DB}) + tid",
        f"    cb = uint64(h * {NL + L})",
        f"    eb0 = int64(h * uint64({cap}))",
        f"    sacc = cuda.shared.array({H * max(NL, 1) * DB}, float32)",
        *([f"    scnt = cuda.shared.array({H * (NL + L)}, int32)",
           f"    sws = cuda.shared.array({H * (NL + L)}, float64)"] if here else []),
        f"    sent = cuda.shared.array({H * cap}, uint32)",
        f"    soff = cuda.shared.array({H * cap}, {off_t})",
        "    tabd = tab[d:]",
        f"    sentw = cuda.shared.array({H * cap}, {wt})",
        f"    for ls in range({NL}):",
        *[f"        sacc[ab + uint64(ls * {DB} + {L * v})] = float32(0.0)" for v in range(V)],
        *(["        if counting and tid == 0:",
           "            scnt[cb + ls] = 0",
           "            sws[cb + ls] = 0.0",
           f"    scnt[cb + {NL} + tid] = 0",
           f"    sws[cb + {NL} + tid] = 0.0"] if here else []),
        "    i = stop - 1",
        *indent(cs._band_lines(K), 1),
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
