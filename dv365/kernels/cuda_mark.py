"""The CUDA mark kernels: every predicate once per event, written where later kernels read it.

* ``mark`` (a thread per event, coalesced column reads; for the jagged output): the event's
  slot bits, its hashed rows (one per distinct row function) and its weights, at the event's
  batch position ``q``;
* ``mark_entries`` (for the fused output): the same weights, and the event's *entries* (see
  :mod:`dv365.kernels.cuda_layout`) as ``ents[s0 + j, q]``, its j-th in the entry group whose
  segments start at ``s0`` (a warp's threads, consecutive events, write consecutive words),
  with their number per group in ``nsel[group, q]``; slot bits and rows only when the
  jagged output is wanted too. A block takes ``mark_events_per_thread`` events a thread and
  counts: per (slot, band) in shared memory, weight sums in a column per thread (float
  shared atomics compile to compare-and-swap loops that a warp's lanes serialize), then one
  global atomic per slice and block.

Both raise a weight's slot (+1) in ``bad[b]`` when a used weight is not finite and positive.
"""

from __future__ import annotations

from dv365.kernels.cuda_layout import CudaLayout
from dv365.kernels.plan import PlanTable
from dv365.kernels.source import band_lines, event_lines, indent, min_band, row_expr


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _jit(layout: CudaLayout, simulator: bool) -> str:
    regs = layout.tuning.mark_max_registers
    return "@cuda.jit" if simulator or not regs else f"@cuda.jit(max_registers={regs})"


def _event_body(layout: CudaLayout, entries: bool) -> list[str]:
    """Per event ``i`` of row ``b`` in band ``k``: slot bits, weight checks, counts, rows,
    weights and (``entries``) the event's entries."""
    plan = layout.plan
    K, W, R, NWS = layout.bands, layout.mask_words, layout.rows_per_event, layout.weight_width
    TM = layout.tuning.mark_threads
    wslot = layout.weighted_slot
    body = [f"m{w} = uint64(0)" for w in range(W)]
    for s in plan.slots:
        low = min_band(plan, s.index)
        body.append(f"if p{s.index}:")
        body.append(f"    m{s.index // 64} |= uint64({1 << (s.index % 64)})")
        if s.weight >= 0:
            body.append(f"    w = e{s.weight}")
            body.append(f"    if not (w > 0.0 and w < math.inf) and k >= {low}:")
            body.append(f"        bad[b] = {s.index + 1}")
        if entries:
            body.append(f"    if k >= {low}:")
            body.append(f"        cuda.atomic.add(mc, {s.index * K} + k, 1)")
            if s.weight >= 0:
                body.append(f"        mw[({wslot[s.index] * K} + k) * {TM} + t] += w")
    body.append("q = base[b] + i - offsets[users[b]]")

    def for_jagged(lines: list[str]) -> list[str]:
        # mark_entries writes slot bits and rows only when the jagged output reads them too
        return ["if jagged:", *indent(lines, 1)] if entries and lines else lines

    body += for_jagged([f"masks[q * {W} + {w}] = m{w}" for w in range(W)])
    # Rows once per event and distinct row function: 64-bit hashing and modulo are costly
    # on a GPU, and the fused kernel's threads would each repeat them.
    for j, (col, hashing, seed, n) in enumerate(layout.row_functions):
        fake = PlanTable(-1, "", col, n, 0, hashing, seed)
        body.append(f"r{j} = int32({row_expr(fake, f'c_{col}[i]')})")
    body += for_jagged([f"rows[q * {R} + {j}] = r{j}" for j in range(R)])
    body += [f"wvals[q * {NWS} + {j}] = e{e}" for e, j in layout.weight_columns.items()]
    if not entries:
        return body
    rowfn, first = layout.row_function_of_table, layout.table_first_rows
    for grp_index, grp in enumerate(layout.groups):
        body.append(f"n = {grp.start}")
        for g in grp:
            seg = layout.segments[g]
            # slots whose slices all have windows skip events older than the widest
            terms = []
            for j, sl in enumerate(seg.slots):
                low = min_band(plan, sl)
                test = f"p{sl}" if low == 0 else f"(p{sl} and k >= {low})"
                terms.append(f"(int64({test}) << {j})")
            body.append(f"sb = {' | '.join(terms)}")
            body.append("if sb != 0:")
            body.append(f"    ents[n, q] = (uint64({first[seg.table]} + r{rowfn[seg.table]}) | "
                        f"(uint64(sb) << uint64(32)) | uint64({g << 52}))")
            body.append("    n += 1")
        body.append(f"nsel[{grp_index}, q] = n - {grp.start}")
    return body


def mark_source(layout: CudaLayout, simulator: bool) -> list[str]:
    """``MARK_EVENTS`` and the ``mark`` kernel (a thread per event)."""
    plan, K = layout.plan, layout.bands
    cols = ", ".join(f"c_{c}" for c in plan.columns)
    return [
        f"MARK_EVENTS = {layout.tuning.mark_threads}  # events per block",
        "",
        _jit(layout, simulator),
        f"def mark(offsets, users, starts, {cols}, base, bad, masks, wvals, rows):",
        "    b = cuda.blockIdx.x",
        "    i = starts[b, 0] + cuda.blockIdx.y * cuda.blockDim.x + cuda.threadIdx.x",
        f"    if i >= starts[b, {K}]:",
        "        return",
        *indent(band_lines(K), 1),
        *indent(event_lines(plan, cuda=True) + _event_body(layout, entries=False), 1),
        "",
    ]


def mark_entries_source(layout: CudaLayout, simulator: bool) -> list[str]:
    """``MARK_ENTRIES_EVENTS``, its slice tables and the counting ``mark_entries`` kernel."""
    plan, tuning = layout.plan, layout.tuning
    K, N = layout.bands, len(plan.slots)
    TM = tuning.mark_threads
    EPT = tuning.mark_events_per_thread
    NWK = len(layout.weighted_slot) * K
    cols = ", ".join(f"c_{c}" for c in plan.columns)
    # a block's events (all of row b) count per (slot, band) in shared memory; a slice of
    # band j then adds the counts of bands j.. (its window holds the newer bands)
    slot_of = [sl.slot for sl in plan.slices]
    band_of = [sl.band for sl in plan.slices]
    wslot_of = [layout.weighted_slot.get(sl.slot, -1) for sl in plan.slices]
    return [
        f"MARK_ENTRIES_EVENTS = {TM * EPT}  # events per block",
        f"MARK_SLICE_SLOT = np.array({slot_of or [0]}, np.int64)",
        f"MARK_SLICE_BAND = np.array({band_of or [0]}, np.int64)",
        f"MARK_SLICE_WSLOT = np.array({wslot_of or [0]}, np.int64)",
        "",
        _jit(layout, simulator),
        f"def mark_entries(offsets, users, starts, {cols}, base, bad, masks, wvals, rows, "
        "nsel, ents, jagged, counts, wsums):",
        "    b = cuda.blockIdx.x",
        f"    i0 = starts[b, 0] + cuda.blockIdx.y * {TM * EPT} + cuda.threadIdx.x",
        f"    mc = cuda.shared.array({max(N * K, 1)}, int32)",
        f"    mw = cuda.shared.array({max(NWK * TM, 1)}, float64)",
        "    t = cuda.threadIdx.x",
        "    j = t",
        f"    while j < {N * K}:",
        "        mc[j] = 0",
        f"        j += {TM}",
        f"    for r in range({NWK}):",
        f"        mw[r * {TM} + t] = 0.0",
        "    cuda.syncthreads()",
        f"    for e in range({EPT}):",
        f"        i = i0 + e * {TM}",
        f"        if i < starts[b, {K}]:",
        *indent(band_lines(K), 3),
        *indent(event_lines(plan, cuda=True) + _event_body(layout, entries=True), 3),
        "    cuda.syncthreads()",
        # tree sum of the threads' columns into column 0
        f"    h = {_pow2_at_least(TM) // 2}",
        "    while h > 0:",
        f"        if t < h and t + h < {TM}:",
        f"            for r in range({NWK}):",
        f"                mw[r * {TM} + t] += mw[r * {TM} + t + h]",
        "        cuda.syncthreads()",
        "        h //= 2",
        "    j = t",
        f"    while j < {len(plan.slices)}:",
        "        s = MARK_SLICE_SLOT[j]",
        "        c = 0",
        "        ws = 0.0",
        f"        for kk in range(MARK_SLICE_BAND[j], {K}):",
        f"            c += mc[s * {K} + kk]",
        "        if MARK_SLICE_WSLOT[j] >= 0:",
        f"            for kk in range(MARK_SLICE_BAND[j], {K}):",
        f"                ws += mw[(MARK_SLICE_WSLOT[j] * {K} + kk) * {TM}]",
        "        if c != 0:",
        "            cuda.atomic.add(counts, (b, j), c)",
        "            cuda.atomic.add(wsums, (b, j), ws)",
        f"        j += {TM}",
        "",
    ]
