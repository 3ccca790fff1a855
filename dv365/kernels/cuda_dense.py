"""The CUDA fused pooling kernels of the dense design (``CUDA_FUSED_DESIGN = "dense"``).

The design before the entries kernel, kept for comparison (``benchmarks/cuda_variants.py``):
the tables split into groups of at most ``CUDA_SLOTS_PER_KERNEL`` slots, a kernel
``fused<g>`` each, a register accumulator per slot and dim, every slot of the group tested
for every event; counts come from ``tally``. The switches it reads are module constants of
:mod:`dv365.kernels.cuda_source`, read when a kernel is generated.
"""

from __future__ import annotations

from dv365.kernels import cuda_source as cs
from dv365.kernels.plan import KernelPlan, PlanTable
from dv365.kernels.source import indent, row_fn_of


def table_groups(plan: KernelPlan) -> list[list[PlanTable]]:
    """Tables split into groups of at most ``CUDA_SLOTS_PER_KERNEL`` slots (a table whole),
    one fused kernel each: a kernel holds a register per slot of its tables, and with all 73
    slots of reels.slice in one kernel (246 registers) the H200 ran it 1.3x slower than four
    kernels of about 128 registers."""
    used = [t for t in plan.tables if plan.slots_of_table(t.index)]
    total = sum(len(plan.slots_of_table(t.index)) for t in used)
    n = max(1, min(len(used), -(-total // cs.CUDA_SLOTS_PER_KERNEL)))
    groups: list[list[PlanTable]] = [[] for _ in range(n)]
    load = [0] * n
    for t in sorted(used, key=lambda t: -len(plan.slots_of_table(t.index))):
        g = load.index(min(load))
        groups[g].append(t)
        load[g] += len(plan.slots_of_table(t.index))
    return [sorted(g, key=lambda t: t.index) for g in groups if g]


def fused_sources(plan: KernelPlan, elem: str, wcol: dict, jit: str) -> list[str]:
    """``FUSED_GROUPS`` and the kernels ``fused0``, ``fused1``, ... of a plan."""
    src: list[str] = []
    rowfn = row_fn_of(plan)
    offs = cs.table_offsets(plan)
    groups = table_groups(plan)
    src.append(f"FUSED_GROUPS = {len(groups)}")
    src.append("")
    for g, used in enumerate(groups):
        src += _fused_kernel(plan, elem, g, used, rowfn, offs, wcol, jit)
    return src


def _fused_kernel(plan: KernelPlan, elem: str, g: int, used: list[PlanTable], rowfn: dict,
                  offs: list[int], wcol: dict, jit: str) -> list[str]:
    """The fused kernel of one group of tables, ``fused<g>``."""
    K, D, S = len(plan.windows), plan.dim, len(plan.slices)
    lay = cs.layout(plan)
    W, R, NW = lay["words"], lay["rows"], lay["weights"]
    NWS = max(NW, 1)
    DB = cs.dims_per_block(D)
    V = cs.dims_per_thread(D)
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
            out += [f"{x}{t.index}_{v} = {cs._elem(elem, f'o + {T * v}')}" for v in range(V)]
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
        *(["    if counting:"] if cs.CUDA_FUSED_COUNTS else []),
        *[line for u in range(U if cs.CUDA_FUSED_COUNTS else 0) for line in (
            f"        if BAND_LS{g}[j] == ls{u}:",
            f"            cuda.atomic.add(counts, (b, BAND_SL{g}[j]), c{u})",
            f"            if wc{u} >= 0:",
            f"                cuda.atomic.add(wsums, (b, BAND_SL{g}[j]), ws{u})")],
    ]
    count_init = ["counting = cuda.blockIdx.z == 0"] if cs.CUDA_FUSED_COUNTS else []
    count_step = ["if counting:"] if cs.CUDA_FUSED_COUNTS else []
    for u in range(U if cs.CUDA_FUSED_COUNTS else 0):
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
    E = cs.CUDA_EVENTS_PER_STEP

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

    if cs.CUDA_MAX_REGISTERS:
        jit = (jit[:-1] + f", max_registers={cs.CUDA_MAX_REGISTERS})" if jit.endswith(")")
               else f"@cuda.jit(max_registers={cs.CUDA_MAX_REGISTERS})")
    return tables_src + [
        jit,
        f"def fused{g}(offsets, users, starts, base, masks, wvals, rows, tab, out, counts,",
        "            wsums):",
        "    b = cuda.blockIdx.x",
        "    tid = cuda.threadIdx.x",
        f"    d = cuda.blockIdx.z * {DB} + tid",
        f"    first = starts[b, 0] + cuda.blockIdx.y * {cs.CUDA_CHUNK_FUSED}",
        f"    stop = min(starts[b, {K}], first + {cs.CUDA_CHUNK_FUSED})",
        "    if first >= stop:",
        "        return",
        "    q0 = base[b] - offsets[users[b]]",
        f"    sm = cuda.shared.array({cs.CUDA_TILE * W}, uint64)",
        f"    sr = cuda.shared.array({cs.CUDA_TILE * R}, int32)",
        f"    sw = cuda.shared.array({cs.CUDA_TILE * NWS}, float32)",
        f"    sw64 = cuda.shared.array({cs.CUDA_TILE * NWS}, float64)",
        "    sob = cuda.shared.array(1, int64)",
        f"    sacc = cuda.shared.array({max(len(slots), 1) * DB}, float32)",
        "    if tid == 0:",
        f"        sob[0] = b * {S * D}",
        *[f"    a{s}_{v} = float32(0.0)" for s in sorted(slots) for v in range(V)],
        *indent(count_init, 1),
        "    i = stop - 1",
        *indent(cs._band_lines(K), 1),
        "    lim = starts[b, k]",
        "    hi = stop",
        "    while hi > first:",
        f"        lo = max(first, hi - {cs.CUDA_TILE})",
        "        cnt = hi - lo",
        *indent(stage, 2),
        "        e = cnt - 1",
        *(stepped() if E > 1 else [
        *(indent(loads("e", "m", "x"), 2) if cs.PIPELINE else []),
        "        while e >= 0:",
        "            if lo + e < lim:",
        "                # leaving band k backwards: slices of window k have all their events",
        "                while lo + e < lim:",
        *indent(flushes, 5),
        "                    k -= 1",
        "                    lim = starts[b, k]",
        *(["            en = e - 1 if e > 0 else 0", *indent(loads("en", "n", "y"), 3)]
          if cs.PIPELINE else indent(loads("e", "m", "x"), 3)),
        *indent(acc, 3),
        *indent(count_step, 3),
        *([f"            x{t.index}_{v} = y{t.index}_{v}" for t in used for v in range(V)]
          + [f"            m{w} = n{w}" for w in range(W)] if cs.PIPELINE else []),
        "            e -= 1"]),
        "        hi = lo",
        "    while k >= 0:",
        *indent(flushes, 2),
        "        k -= 1",
        "",
    ]
