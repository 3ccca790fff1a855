"""The CPU generator: a kernel plan as ``njit(parallel=True)`` kernels, ``prange`` over users.

``fused`` walks each user's bands backwards with a ``[slots, D]`` accumulator and reads every
slice off its slot when it leaves the slice's window; ``count`` does the same without rows
(counts and weight sums, the jagged path's first pass); ``fill`` writes the jagged rows and
bag weights. fp16 and bf16 tables are read as uint16 through a 65536-entry lookup table
``lut`` (Numba's CPU target has no half types).
"""

from __future__ import annotations

from dv365.kernels.plan import KernelPlan, PlanTable
from dv365.kernels.source import (
    bounds_fn, event_lines, fill_body, header, helpers, indent, min_band, row_expr, row_fn_of,
    row_functions)


def _cpu_elem(elem: str, t: int) -> str:
    return f"t{t}[r{t}, d]" if elem == "f32" else f"lut[t{t}[r{t}, d]]"


def generate(plan: KernelPlan, elem: str) -> str:
    K, D, S, N = len(plan.windows), plan.dim, len(plan.slices), len(plan.slots)
    inline = "@njit(cache=True, inline='always', error_model='numpy')"
    kernel = "@njit(parallel=True, cache=True, error_model='numpy')"
    cols = ", ".join(f"c_{c}" for c in plan.columns)
    tables = ", ".join(f"t{t.index}" for t in plan.tables)
    ev = event_lines(plan, cuda=False)
    weighted = [s for s in plan.slots if s.weight >= 0]

    src = header(plan, "cpu") + ["from numba import njit, prange", ""]
    src += helpers(inline) + bounds_fn(plan, inline) + [""]

    def weight_check(slot) -> list[str]:
        return [f"w = e{slot.weight}",
                f"if not (w > 0.0 and w < math.inf) and k >= {min_band(plan, slot.index)}:",
                f"    bad[b] = {slot.index + 1}"]

    # fused -----------------------------------------------------------------------
    # Two passes per user. A: evaluate every event (slot bits, rows, weights) into small
    # per-user arrays. B: walk the bands backwards and gather rows. B's loop body is short and
    # branch-light, so the CPU keeps many independent row misses in flight; with predicates
    # evaluated between gathers (one pass) it overlapped far fewer.
    W = (N + 63) // 64
    wexprs = sorted({s.weight for s in plan.slots if s.weight >= 0})
    wcol = {e: j for j, e in enumerate(wexprs)}
    rowfn = row_fn_of(plan)
    fns = row_functions(plan)
    pass_a = ["j = i - lo"]
    for w in range(W):
        bits = [f"(uint64({1 << (s.index % 64)}) if p{s.index} else uint64(0))"
                for s in plan.slots if s.index // 64 == w]
        pass_a.append(f"mk[j, {w}] = " + " | ".join(bits))
    for fi, (col, hashing, seed, n) in enumerate(fns):
        users_of = [s.index for s in plan.slots if rowfn[s.table] == fi]
        fake = PlanTable(-1, "", col, n, 0, hashing, seed)
        pass_a.append(f"if {' or '.join(f'p{x}' for x in users_of)}:")
        pass_a.append(f"    rw[j, {fi}] = {row_expr(fake, f'c_{col}[i]')}")
    for s in plan.slots:
        if s.weight >= 0:
            pass_a.append(f"if p{s.index}:")
            pass_a += indent(weight_check(s), 1)
    pass_a += [f"wv[j, {jj}] = float32(e{e})" for e, jj in wcol.items()]
    for e, jj in wcol.items():
        pass_a.append(f"wd[j, {jj}] = e{e}")

    body = ["j = i - lo"] + [f"m{w} = mk[j, {w}]" for w in range(W)]
    for t in plan.tables:
        slots = plan.slots_of_table(t.index)
        if not slots:
            continue
        words: dict[int, int] = {}
        for sl in slots:
            words[sl.index // 64] = words.get(sl.index // 64, 0) | (1 << (sl.index % 64))
        test = " or ".join(f"(m{w} & uint64({bits})) != 0" for w, bits in sorted(words.items()))
        body.append(f"if {test}:")
        body.append(f"    r{t.index} = rw[j, {rowfn[t.index]}]")
        for sl in slots:
            body.append(f"    if (m{sl.index // 64} & uint64({1 << (sl.index % 64)})) != 0:")
            body.append(f"        cnt[{sl.index}] += 1")
            if sl.weight >= 0:
                body.append(f"        wsum[{sl.index}] += wd[j, {wcol[sl.weight]}]")
                body.append(f"        wf = wv[j, {wcol[sl.weight]}]")
                body.append(f"        for d in range({D}):")
                body.append(f"            acc[{sl.index}, d] += wf * {_cpu_elem(elem, t.index)}")
            else:
                body.append(f"        for d in range({D}):")
                body.append(f"            acc[{sl.index}, d] += {_cpu_elem(elem, t.index)}")
    src += [
        kernel,
        f"def fused(offsets, users, request_ts, ts, {cols}, {tables}, lut,",
        "          slice_slot, slice_band, slice_pool, out, counts, bad):",
        "    for b in prange(users.shape[0]):",
        f"        starts = np.empty({K + 1}, np.int64)",
        "        _bounds(offsets, ts, users[b], request_ts[b], starts)",
        "        lo = starts[0]",
        f"        n = starts[{K}] - lo",
        f"        mk = np.empty((n, {W}), np.uint64)",
        f"        rw = np.empty((n, {len(fns)}), np.int64)",
        f"        wv = np.empty((n, {max(len(wexprs), 1)}), np.float32)",
        f"        wd = np.empty((n, {max(len(wexprs), 1)}), np.float64)",
        "        k = 0",
        f"        for i in range(lo, starts[{K}]):",
        "            while i >= starts[k + 1]:",
        "                k += 1",
        *indent(ev + pass_a, 3),
        f"        acc = np.zeros(({N}, {D}), np.float32)",
        f"        cnt = np.zeros({N}, np.int64)",
        f"        wsum = np.zeros({N}, np.float64)",
        f"        for k in range({K - 1}, -1, -1):",
        "            for i in range(starts[k], starts[k + 1]):",
        *indent(body, 4),
            # leaving band k: every slice of window k is read off its slot",
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
    wexprs = sorted({s.weight for s in plan.slots if s.weight >= 0})
    body.append("q = base[b] + i - off")
    for w in range(W):
        bits = [f"(uint64({1 << (s.index % 64)}) if p{s.index} else uint64(0))"
                for s in plan.slots if s.index // 64 == w]
        body.append(f"masks[q, {w}] = " + " | ".join(bits))
    body += [f"wvals[q, {j}] = e{e}" for j, e in enumerate(wexprs)]
    src += [
        kernel,
        f"def count(offsets, users, request_ts, ts, {cols},",
        "          slice_slot, slice_band, counts, wsums, bad, base, masks, wvals):",
        "    for b in prange(users.shape[0]):",
        f"        starts = np.empty({K + 1}, np.int64)",
        "        _bounds(offsets, ts, users[b], request_ts[b], starts)",
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
    fill_ev += [f"e{e} = wvals[q, {j}]" for j, e in enumerate(wexprs)]
    src += [
        kernel,
        f"def fill(offsets, users, request_ts, ts, {cols},",
        "         bag_start, counts, wsums, values, weights, base, masks, wvals):",
        "    B = users.shape[0]",
        "    for b in prange(B):",
        f"        starts = np.empty({K + 1}, np.int64)",
        "        _bounds(offsets, ts, users[b], request_ts[b], starts)",
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
