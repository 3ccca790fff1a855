"""The CUDA generator: a kernel plan as ``numba.cuda.jit`` kernels.

The same source runs on a GPU and in Numba's CUDA simulator (``simulator=True`` swaps the
bf16 widening and the wrapping 64-bit hash for simulator-safe forms).
"""

from __future__ import annotations

from dv365.kernels.plan import KernelPlan, PlanTable
from dv365.kernels.source import (
    bounds_fn, event_lines, fill_body, header, helpers, indent, min_band, row_expr, row_fn_of,
    row_functions)

CUDA_CHUNK_FUSED = 2048  # events per block of the fused CUDA kernel
CUDA_CHUNK_COUNT = 256  # events per thread of the count/fill CUDA kernels


def _cuda_elem(elem: str, t: int) -> str:
    if elem == "f32":
        return f"t{t}[r{t}, d]"
    if elem == "f16":
        return f"float32(t{t}[r{t}, d])"
    return f"_bf16(t{t}[r{t}, d])"


def _thread_chunk(K: int, per_chunk: str) -> list[str]:
    """Prologue of the one-thread-per-(row, chunk) kernels: the thread's row ``b`` and chunk
    ``ch`` (``per_chunk.shape[1]`` chunks per row), the row's band ``starts`` and the chunk's
    events ``[first, stop)`` inside the gap cutoff; threads with none return."""
    return [
        "    g = cuda.grid(1)",
        f"    nchunks = {per_chunk}.shape[1]",
        "    b = g // nchunks",
        "    ch = g % nchunks",
        "    if b >= users.shape[0]:",
        "        return",
        f"    starts = cuda.local.array({K + 1}, int64)",
        "    _bounds(offsets, ts, users[b], request_ts[b], starts)",
        "    off = offsets[users[b]]",
        "    first = max(starts[0], off + ch * chunk)",
        f"    stop = min(starts[{K}], off + (ch + 1) * chunk)",
        "    if first >= stop:",
        "        return",
    ]


def generate(plan: KernelPlan, elem: str, simulator: bool) -> str:
    K, D, S, N = len(plan.windows), plan.dim, len(plan.slices), len(plan.slots)
    dev = "@cuda.jit(device=True, inline=True)"
    cols = ", ".join(f"c_{c}" for c in plan.columns)
    tables = ", ".join(f"t{t.index}" for t in plan.tables)
    ev = event_lines(plan, cuda=True)

    src = header(plan, "cuda") + ["from numba import cuda", ""]
    if simulator:
        src += ["def _bf16(x):",
                "    return np.array([np.uint32(x) << np.uint32(16)], np.uint32)"
                ".view(np.float32)[0]", ""]
    else:
        src += ["from numba.cuda import libdevice", "", dev, "def _bf16(x):",
                "    return libdevice.int_as_float(int32(x) << 16)", ""]
        pass
    helper_lines = helpers(dev)
    if simulator:
        # The simulator multiplies NumPy uint64 scalars, which warn on the intended wrap.
        helper_lines = [line.replace("def _hash_row(z, n):",
                                "def _hash_row(z, n):\n    with np.errstate(over='ignore'):\n"
                                "        return _hash_row_wrapping(z, n)\n\n\n"
                                "def _hash_row_wrapping(z, n):") for line in helper_lines]
    src += helper_lines
    src += [
        dev,
        "def _band_of(starts, i):",
        "    k = 0",
        f"    while k < {K - 1} and i >= starts[k + 1]:",
        "        k += 1",
        "    return k",
        "",
    ]
    src += bounds_fn(plan, dev) + [""]

    W = (N + 63) // 64
    wexprs = sorted({s.weight for s in plan.slots if s.weight >= 0})
    wcol = {e: j for j, e in enumerate(wexprs)}

    # count: one thread per (user, chunk of `chunk` events). Evaluates every predicate once
    # per event, writes the chunk's counts and weight sums per slice, and the event's slot
    # bits (masks[p, word]) and weights (wvals[p, j]) at its batch position p, which the
    # fused kernel reads instead of evaluating again in each of its D threads.
    def cflush(k: int) -> list[str]:
        out = []
        for sl in plan.slices:
            if sl.band == k:
                out.append(f"counts[b, ch, {sl.index}] = n{sl.slot}")
                slot = plan.slots[sl.slot]
                if slot.weight >= 0:
                    out.append(f"wsums[b, ch, {sl.index}] = w{sl.slot}")
        return out or ["pass"]

    cflushes = []
    for k in range(K):
        cflushes += [f"if k == {k}:", *indent(cflush(k), 1)]
    body = [f"m{w} = uint64(0)" for w in range(W)]
    for s in plan.slots:
        body.append(f"if p{s.index}:")
        body.append(f"    n{s.index} += 1")
        body.append(f"    m{s.index // 64} |= uint64({1 << (s.index % 64)})")
        if s.weight >= 0:
            body.append(f"    w = e{s.weight}")
            low = min_band(plan, s.index)
            body.append(f"    if not (w > 0.0 and w < math.inf) and k >= {low}:")
            body.append(f"        bad[b] = {s.index + 1}")
            body.append(f"    w{s.index} += w")
    body.append("q = base[b] + i - off")
    body += [f"masks[q, {w}] = m{w}" for w in range(W)]
    # Rows once per event and distinct row function (64-bit hashing and modulo are costly
    # on a GPU; the fused kernel's D threads would each repeat them).
    for j, (col, hashing, seed, n) in enumerate(row_functions(plan)):
        fake = PlanTable(-1, "", col, n, 0, hashing, seed)
        body.append(f"rows[q, {j}] = int32({row_expr(fake, f'c_{col}[i]')})")
    body += [f"wvals[q, {j}] = float32(e{e})" for e, j in wcol.items()]
    src += [
        "@cuda.jit",
        f"def count(offsets, users, request_ts, ts, {cols}, chunk, base, counts, wsums, bad,",
        "          masks, wvals, rows):",
        *_thread_chunk(K, "counts"),
        *[f"    n{s.index} = 0" for s in plan.slots],
        *[f"    w{s.index} = 0.0" for s in plan.slots if s.weight >= 0],
        "    k = _band_of(starts, stop - 1)",
        "    i = stop - 1",
        "    while i >= first:",
        "        while i < starts[k]:",
        *indent(cflushes, 3),
        "            k -= 1",
        *indent(ev + body, 2),
        "        i -= 1",
        "    while k >= 0:",
        *indent(cflushes, 2),
        "        k -= 1",
        "",
    ]

    # fused: grid (B, chunks), block D threads; thread d owns dimension d and keeps one
    # register accumulator per slot. Reads the count kernel's slot bits and weights.
    def flush(k: int) -> list[str]:
        out = []
        for sl in plan.slices:
            if sl.band == k:
                out.append(f"cuda.atomic.add(out, (b, {sl.index}, d), a{sl.slot})")
        return out or ["pass"]

    flushes = []
    for k in range(K):
        flushes += [f"if k == {k}:", *indent(flush(k), 1)]
    rowfn = row_fn_of(plan)
    body = ["q = base[b] + i - off"] + [f"m{w} = masks[q, {w}]" for w in range(W)]
    for t in plan.tables:
        slots = plan.slots_of_table(t.index)
        if not slots:
            continue
        words = {}
        for sl in slots:
            words[sl.index // 64] = words.get(sl.index // 64, 0) | (1 << (sl.index % 64))
        test = " or ".join(f"(m{w} & uint64({bits})) != 0" for w, bits in sorted(words.items()))
        body.append(f"if {test}:")
        body.append(f"    r{t.index} = rows[q, {rowfn[t.index]}]")
        body.append(f"    x{t.index} = {_cuda_elem(elem, t.index)}")
        for sl in slots:
            body.append(f"    if (m{sl.index // 64} & uint64({1 << (sl.index % 64)})) != 0:")
            if sl.weight >= 0:
                body.append(f"        a{sl.index} += wvals[q, {wcol[sl.weight]}] * x{t.index}")
            else:
                body.append(f"        a{sl.index} += x{t.index}")
    src += [
        "@cuda.jit",
        f"def fused(offsets, users, request_ts, ts, base, masks, wvals, rows, {tables}, out):",
        "    b = cuda.blockIdx.x",
        "    chunk = cuda.blockIdx.y",
        "    d = cuda.threadIdx.x",
        f"    sh = cuda.shared.array({K + 1}, int64)",
        "    if d == 0:",
        "        _bounds(offsets, ts, users[b], request_ts[b], sh)",
        "    cuda.syncthreads()",
        "    off = offsets[users[b]]",
        f"    first = max(sh[0], off + chunk * {CUDA_CHUNK_FUSED})",
        f"    stop = min(sh[{K}], off + (chunk + 1) * {CUDA_CHUNK_FUSED})",
        f"    if first >= stop or d >= {D}:",
        "        return",
        *[f"    a{s.index} = float32(0.0)" for s in plan.slots],
        "    k = _band_of(sh, stop - 1)",
        "    i = stop - 1",
        "    while i >= first:",
        "        while i < sh[k]:",
        "            # leaving band k backwards: slices of window k have all their events",
        *indent(flushes, 3),
        "            k -= 1",
        *indent(body, 2),
        "        i -= 1",
        "    while k >= 0:",
        *indent(flushes, 2),
        "        k -= 1",
        "",
    ]

    # fill: one thread per (user, chunk), forwards, at the chunk's scanned positions ----
    body = fill_body(plan, count="totals", wsum="wtotals", pos="pos[b, ch, ")
    src += [
        "@cuda.jit",
        f"def fill(offsets, users, request_ts, ts, {cols}, chunk, pos, totals, wtotals,",
        "         values, weights):",
        *_thread_chunk(K, "pos"),
        "    k = _band_of(starts, first)",
        "    for i in range(first, stop):",
        "        while i >= starts[k + 1]:",
        "            k += 1",
        *indent(ev + body, 2),
        "",
    ]
    return "\n".join(src) + "\n"
