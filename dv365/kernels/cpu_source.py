"""The CPU generator: a kernel plan as ``njit(parallel=True)`` kernels, ``prange`` over users.

``fused`` walks each user's bands backwards with a ``[slots, D]`` accumulator, a chunk of
events at a time (evaluate the chunk into per-table lists of (row, slot, weight), then gather
the rows list by list), and reads every slice off its slot when it leaves the slice's window;
``count`` does the same without rows (counts and weight sums, the jagged path's first pass);
``fill`` writes the jagged rows and bag weights. fp16 and bf16 tables are read as uint16
through a 65536-entry lookup table ``lut`` (Numba's CPU target has no half types).
"""

from __future__ import annotations

from dv365.errors import ConfigError
from dv365.kernels.plan import KernelPlan, PlanTable
from dv365.kernels.source import (
    bounds_fn, event_lines, fill_body, header, helpers, indent, min_band, row_expr, row_fn_of,
    row_functions, weight_columns)


# Events per chunk of the fused kernel: its entry lists (at most chunk x slots entries) stay
# in L1/L2 while they are walked.
FUSED_CHUNK = 512
# An entry is one int64: the row shifted left by SLOT_BITS, or'ed with the slot.
SLOT_BITS = 16


def _cpu_elem(elem: str, t: int) -> str:
    return f"t{t}[r, d]" if elem == "f32" else f"lut[t{t}[r, d]]"


def _per_row(K: int) -> list[str]:
    """Prologue of every CPU kernel: the batch's rows in parallel, each with its band
    ``starts[0..K]``."""
    return [
        "    for b in prange(users.shape[0]):",
        f"        starts = np.empty({K + 1}, np.int64)",
        "        _bounds(offsets, ts, users[b], request_ts[b], starts)",
    ]


def generate(plan: KernelPlan, elem: str) -> str:
    K, D, S, N = len(plan.windows), plan.dim, len(plan.slices), len(plan.slots)
    inline = "@njit(cache=True, inline='always', error_model='numpy')"
    kernel = "@njit(parallel=True, cache=True, error_model='numpy')"
    cols = ", ".join(f"c_{c}" for c in plan.columns)
    tables = ", ".join(f"t{t.index}" for t in plan.tables)
    ev = event_lines(plan, cuda=False)

    src = header(plan, "cpu") + ["from numba import njit, prange", ""]
    src += helpers(inline) + bounds_fn(plan, inline) + [""]

    def weight_check(slot) -> list[str]:
        return [f"w = e{slot.weight}",
                f"if not (w > 0.0 and w < math.inf) and k >= {min_band(plan, slot.index)}:",
                f"    bad[b] = {slot.index + 1}"]

    # fused -----------------------------------------------------------------------
    # Per user, the bands backwards (newest first), each in chunks of FUSED_CHUNK events.
    # A: evaluate every event of the chunk and append, for each table it is selected into,
    # one entry (row, slot, weight) per slot of that table to the table's list; an entry is
    # always written and kept (its list advanced) only when its slot selects the event, so
    # appending does not branch per slot. B: per table, walk its list and add each row into
    # its slot's accumulator. B's loop has no data-dependent branch, so the CPU keeps many
    # row misses in flight (DRAM latency bounds this kernel: rows are random reads from
    # tables of hundreds of MB); a chunk's lists stay in L1/L2.
    C = FUSED_CHUNK
    if N >= 1 << SLOT_BITS:
        raise ConfigError(f"the spec lowers to {N} slots; the CPU kernels take at most "
                          f"{(1 << SLOT_BITS) - 1}", where="spec")
    rowfn = row_fn_of(plan)
    fns = row_functions(plan)
    used = [t for t in plan.tables if plan.slots_of_table(t.index)]
    first: dict[int, int] = {}  # where each table's list starts in the entry arrays
    cap = 0
    for t in used:
        first[t.index] = cap
        cap += C * len(plan.slots_of_table(t.index))
    weighted_tables = {t.index for t in used
                       if any(s.weight >= 0 for s in plan.slots_of_table(t.index))}

    pass_a = []
    for fi, (col, hashing, seed, n) in enumerate(fns):
        users_of = [s.index for s in plan.slots if rowfn[s.table] == fi]
        fake = PlanTable(-1, "", col, n, 0, hashing, seed)
        pass_a.append(f"if {' | '.join(f'p{x}' for x in users_of)}:")
        pass_a.append(f"    rf{fi} = {row_expr(fake, f'c_{col}[i]')}")
    for s in plan.slots:
        if s.weight >= 0:
            pass_a.append(f"if p{s.index}:")
            pass_a += indent(weight_check(s), 1)
    for t in used:
        slots = plan.slots_of_table(t.index)
        pass_a.append(f"if {' | '.join(f'p{s.index}' for s in slots)}:")
        append = [f"rs = rf{rowfn[t.index]} << {SLOT_BITS}", f"e = q{t.index}"]
        for sl in slots:
            append.append(f"ent[e] = rs | {sl.index}")
            if t.index in weighted_tables:
                append.append(f"ent_w[e] = {f'e{sl.weight}' if sl.weight >= 0 else '1.0'}")
            append.append(f"e += int64(p{sl.index})")
        append.append(f"q{t.index} = e")
        pass_a += indent(append, 1)

    pass_b = []
    for t in used:
        pass_b.append(f"for e in range({first[t.index]}, q{t.index}):")
        add = ["v = ent[e]", f"r = v >> {SLOT_BITS}", f"s = v & {(1 << SLOT_BITS) - 1}",
               "cnt[s] += 1"]
        if t.index in weighted_tables:
            add += ["w = ent_w[e]", "wsum[s] += w", "wf = float32(w)",
                    f"for d in range({D}):",
                    f"    acc[s, d] += wf * {_cpu_elem(elem, t.index)}"]
        else:
            add += [f"for d in range({D}):", f"    acc[s, d] += {_cpu_elem(elem, t.index)}"]
        pass_b += indent(add, 1)

    src += [
        kernel,
        f"def fused(offsets, users, request_ts, ts, {cols}, {tables}, lut,",
        "          slice_slot, slice_band, slice_pool, out, counts, bad):",
        *_per_row(K),
        # Row variables are set under a branch and read under another: defining them on
        # every path first matters, as with parallel=True Numba otherwise resolved one
        # table's row variable to another's.
        *[f"        rf{fi} = int64(0)" for fi in range(len(fns))],
        f"        ent = np.empty({max(cap, 1)}, np.int64)",
        f"        ent_w = np.empty({max(cap, 1) if weighted_tables else 1}, np.float64)",
        f"        acc = np.zeros(({N}, {D}), np.float32)",
        f"        cnt = np.zeros({N}, np.int64)",
        f"        wsum = np.zeros({N}, np.float64)",
        f"        for k in range({K - 1}, -1, -1):",
        "            hi = starts[k + 1]",
        "            while hi > starts[k]:",
        f"                lo = max(starts[k], hi - {C})",
        *[f"                q{t.index} = {first[t.index]}" for t in used],
        "                for i in range(lo, hi):",
        *indent(ev + pass_a, 5),
        *indent(pass_b, 4),
        "                hi = lo",
        # leaving band k: every slice of window k is read off its slot
        f"            for s in range({S}):",
        "                if slice_band[s] != k:",
        "                    continue",
        "                q = slice_slot[s]",
        "                counts[b, s] = cnt[q]",
        "                den = float64(cnt[q]) if slice_pool[s] == 0 else (",
        "                    wsum[q] if slice_pool[s] == 1 else 1.0)",
        "                if cnt[q] > 0:",
        "                    scale = float32(1.0 / den)",
        f"                    for d in range({D}):",
        "                        out[b, s, d] = acc[q, d] * scale",
        "                else:",
        f"                    for d in range({D}):",
        "                        out[b, s, d] = 0.0",
        "",
    ]

    # count -------------------------------------------------------------------------
    body = []
    for s in plan.slots:
        body.append(f"if p{s.index}:")
        body.append(f"    cnt[{s.index}] += 1")
        if s.weight >= 0:
            body += indent(weight_check(s), 1)
            body.append(f"    wsum[{s.index}] += w")
    # The event's slot bits and weights, for the fill pass (which then evaluates nothing).
    W = (N + 63) // 64
    wcol = weight_columns(plan)
    body.append("q = base[b] + i - off")
    for w in range(W):
        bits = [f"(uint64({1 << (s.index % 64)}) if p{s.index} else uint64(0))"
                for s in plan.slots if s.index // 64 == w]
        body.append(f"masks[q, {w}] = " + " | ".join(bits))
    body += [f"wvals[q, {j}] = e{e}" for e, j in wcol.items()]
    src += [
        kernel,
        f"def count(offsets, users, request_ts, ts, {cols},",
        "          slice_slot, slice_band, counts, wsums, bad, base, masks, wvals):",
        *_per_row(K),
        "        off = offsets[users[b]]",
        f"        cnt = np.zeros({N}, np.int64)",
        f"        wsum = np.zeros({N}, np.float64)",
        f"        for k in range({K - 1}, -1, -1):",
        "            for i in range(starts[k], starts[k + 1]):",
        *indent(ev + body, 4),
        f"            for s in range({S}):",
        "                if slice_band[s] == k:",
        "                    counts[b, s] = cnt[slice_slot[s]]",
        "                    wsums[b, s] = wsum[slice_slot[s]]",
        "",
    ]

    # fill --------------------------------------------------------------------------
    body = fill_body(plan, count="counts", wsum="wsums", pos="pos[")
    fill_ev = ["q = base[b] + i - off"] + [f"m{w} = masks[q, {w}]" for w in range(W)]
    fill_ev += [f"p{s.index} = (m{s.index // 64} & uint64({1 << (s.index % 64)})) != 0"
                for s in plan.slots]
    fill_ev += [f"e{e} = wvals[q, {j}]" for e, j in wcol.items()]
    src += [
        kernel,
        f"def fill(offsets, users, request_ts, ts, {cols},",
        "         bag_start, counts, wsums, values, weights, base, masks, wvals):",
        "    B = users.shape[0]",
        *_per_row(K),
        f"        pos = np.empty({S}, np.int64)",
        f"        for s in range({S}):",
        "            pos[s] = bag_start[s * B + b]",
        "        off = offsets[users[b]]",
        "        k = 0",
        f"        for i in range(starts[0], starts[{K}]):",
        "            while i >= starts[k + 1]:",
        "                k += 1",
        *indent(fill_ev + body, 3),
        "",
    ]
    return "\n".join(src) + "\n"
