"""The CUDA fused pooling kernel, ``fused_entries``: walks the entries ``mark_entries`` wrote.

A block (one warp, or ``dims_per_block`` threads when 32 does not divide them) per (batch
row, chunk of events, entry group, block of dims) walks the chunk's entries of its group
newest first; each thread owns ``dims_per_thread`` dims of every accumulator of the group, in
shared memory. Per entry one row load, per selected slot (found with ``ffs``) one
multiply-add, so unselected tables and slots cost nothing; the rows of the next
``prefetch_entries`` entries are loaded before the current ones are added. When the walk
leaves a band, the band's slices are flushed into ``out`` with atomic adds. Counts and weight
sums come from ``mark_entries``.

Indices are unsigned: Numba adds a negative-index wraparound to every signed index, which
doubled the instructions per slot.
"""

from __future__ import annotations

from dv365.kernels.cuda_layout import CudaLayout
from dv365.kernels.source import band_lines, elem_load, indent


def fused_source(layout: CudaLayout, elem: str, jit: str) -> list[str]:
    """The ``ENTRY_*`` tables and the ``fused_entries`` kernel of ``layout``'s plan."""
    plan, tuning = layout.plan, layout.tuning
    K, D, S = layout.bands, plan.dim, len(plan.slices)
    NWS = layout.weight_width
    DB, V, L = layout.dims_per_block, layout.dims_per_thread, layout.lanes
    NZ, NL = layout.dim_blocks, layout.accumulators
    P = tuning.prefetch_entries
    cap = layout.staged_entries
    ptr, flat = layout.group_band_slices
    src = [
        f"ENTRY_SEGMENTS = {len(layout.segments)}",
        f"ENTRY_GROUPS = {layout.entry_groups}",
        f"ENTRY_BLOCKS_Z = {layout.entry_groups * NZ}",
        f"GROUP_SEG0 = np.array({[grp.start for grp in layout.groups] or [0]}, np.int64)",
        f"SEG_BASE = np.array({list(layout.segment_first_slot) or [0]}, np.uint32)",
        "SEG_WCOL = np.array("
        f"{[layout.weight_columns.get(s.weight, -1) for s in layout.segments] or [0]}, np.int32)",
        f"EBAND_PTR = np.array({ptr}, np.uint32)",
        f"EBAND_SLICE = np.array({[sl.index for sl in flat] or [0]}, np.uint32)",
        f"EBAND_LSLOT = np.array({[layout.local_slot[sl.slot] for sl in flat] or [0]}, "
        "np.uint32)",
        "",
    ]

    # Staging splits each entry into its row's first element (row * D, 32-bit when every
    # table element's offset fits: a load's address is then one multiply-add) and a word of
    # slot bits and first slot. Each thread indexes ``tabd``, the tables from its own dim.
    off_t = "uint32" if layout.offset32 else "uint64"

    def loads(u: int, j: str, x: str, en: str) -> list[str]:
        # an entry past the tile's start reads row 0: loads stay unconditional
        return [f"{en}{u} = soff[{j} - {u}] if {j} >= {u} else {off_t}(0)",
                *[f"{x}{u}_{v} = {elem_load(elem, f'{en}{u} + {off_t}({L * v})', 'tabd')}"
                  for v in range(V)]]

    flush = [
        f"for jj in range(EBAND_PTR[g * {K + 1} + k], EBAND_PTR[g * {K + 1} + k + 1]):",
        f"    a = tid + uint64(EBAND_LSLOT[jj]) * uint64({DB})",
        f"    o = ob + uint64(EBAND_SLICE[jj]) * uint64({D})",
        *[f"    cuda.atomic.add(out, o + uint64({L * v}), sacc[a + uint64({L * v})])"
          for v in range(V)],
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
            f"    w = sentw[j - {u}]",
            f"    eb = sent[j - {u}]",
            "    bits = eb & uint32(0xFFFFF)",
            "    sb = uint64(eb >> uint32(20))",
            "    while bits != uint32(0):",
            "        ls = sb + uint64(cuda.ffs(bits) - 1)",
            "        bits = uint32(bits & (bits - uint32(1)))",
            f"        a = tid + ls * uint64({DB})",
            *[f"        sacc[a + uint64({L * v})] += w * x{u}_{v}" for v in range(V)],
        ]

    # Staging resolves each entry's segment into its first slot and its weight (a lane per
    # event), so the walk reads both from the entry.
    stage = [
        "cuda.syncthreads()",
        f"lo = max(first, hi - {tuning.tile_events})",
        f"while epos[g, q0 + hi] - epos[g, q0 + lo] > {cap}:",
        "    lo = (lo + hi + 1) // 2",
        "cnt = hi - lo",
        "e0 = epos[g, q0 + lo]",
        "n = epos[g, q0 + hi] - e0",
        "ev = int64(tid)",
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
        f"    ev += {L}",
        "jl = epos[g, q0 + lim] - e0 if lim > lo else -1",
        "cuda.syncthreads()",
    ]
    chunk = tuning.fused_chunk_events
    body = [
        jit,
        "def fused_entries(offsets, users, starts, base, epos, ents, wvals, tab, out):",
        "    b = cuda.blockIdx.x",
        # unsigned: a signed modulo costs a sign correction each time it is recomputed
        "    tid = uint64(cuda.threadIdx.x)",
        f"    g = cuda.blockIdx.z // {NZ}",
        f"    zd = cuda.blockIdx.z % {NZ}",
        "    s0 = GROUP_SEG0[g]",
        f"    d = uint64(zd * {DB}) + tid",
        f"    first = starts[b, 0] + cuda.blockIdx.y * {chunk}",
        f"    stop = min(starts[b, {K}], first + {chunk})",
        "    if first >= stop:",
        "        return",
        "    q0 = base[b] - offsets[users[b]]",
        f"    ob = uint64(b * {S * D}) + d",
        f"    sacc = cuda.shared.array({max(NL, 1) * DB}, float32)",
        f"    sent = cuda.shared.array({cap}, uint32)",
        f"    soff = cuda.shared.array({cap}, {off_t})",
        "    tabd = tab[d:]",
        f"    sentw = cuda.shared.array({cap}, float32)",
        f"    for ls in range({NL}):",
        *[f"        sacc[tid + uint64(ls * {DB} + {L * v})] = float32(0.0)" for v in range(V)],
        "    i = stop - 1",
        *indent(band_lines(K), 1),
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
