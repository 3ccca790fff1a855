"""The CUDA generator: a kernel plan as ``numba.cuda.jit`` kernels.

The same source runs on a GPU and in Numba's CUDA simulator (``simulator=True`` swaps the
bf16 widening and the wrapping 64-bit hash for simulator-safe forms).
"""

from __future__ import annotations

from dataclasses import dataclass

from dv365.kernels.plan import KernelPlan, PlanTable
from dv365.kernels.source import (
    bounds_fn, event_lines, fill_body, header, helpers, indent, min_band, row_expr, row_fn_of,
    row_functions)

CUDA_CHUNK_COUNT = 256  # events per thread of the count/fill CUDA kernels
# Static shared memory per block stays under CUDA's 48 KiB limit for static arrays.
SHARED_BUDGET = 46 * 1024


@dataclass(frozen=True)
class FusedLayout:
    """How the fused kernel splits its work (compile-time constants of the generated source).

    A block takes one *item* (up to ``chunk`` consecutive events of one batch row, all in one
    time band), a tile of ``dim_tile`` embedding dimensions and a group of ``slot_group``
    slots, with ``threads`` threads that stage and evaluate ``threads`` events at a time.
    ``slot_group`` and ``dim_tile`` keep the block's shared accumulators
    ``[slot_group, dim_tile]`` float32 inside the static shared-memory limit.
    """

    threads: int
    dim_tile: int
    slot_group: int
    chunk: int

    @staticmethod
    def staging_bytes(plan: KernelPlan, threads: int) -> int:
        words = (len(plan.slots) + 31) // 32
        n_w = len({s.weight for s in plan.slots if s.weight >= 0})
        return threads * (4 * words + 4 * len(row_functions(plan)) + 12 * n_w)

    @classmethod
    def choose(cls, plan: KernelPlan, simulator: bool = False, *, threads: int | None = None,
               dim_tile: int | None = None, chunk: int | None = None) -> "FusedLayout":
        # The simulator runs one Python thread per CUDA thread: fewer keep tests quick.
        threads = threads or (64 if simulator else 256)
        dim_tile = dim_tile or min(plan.dim, 64)
        room = SHARED_BUDGET - cls.staging_bytes(plan, threads)
        per_slot = 4 * dim_tile + 12
        group = max(1, min(len(plan.slots), room // per_slot))
        return cls(threads, dim_tile, group, chunk or (threads * 16))

    def tag(self) -> str:
        return f"t{self.threads}d{self.dim_tile}g{self.slot_group}c{self.chunk}"


def _cuda_elem(elem: str, t: int) -> str:
    if elem == "f32":
        return f"t{t}[r{t}, d]"
    if elem == "f16":
        return f"float32(t{t}[r{t}, d])"
    return f"_bf16(t{t}[r{t}, d])"


def generate(plan: KernelPlan, elem: str, simulator: bool,
             layout: "FusedLayout | None" = None) -> str:
    """The CUDA kernel module of ``plan``: ``bounds``, ``fused``, ``count`` and ``fill``."""
    layout = layout or FusedLayout.choose(plan, simulator)
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
        "    g = cuda.grid(1)",
        "    nchunks = counts.shape[1]",
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

    src += _fused(plan, elem, layout, ev)

    # fill: one thread per (user, chunk), forwards, at the chunk's scanned positions ----
    body = fill_body(plan, count="totals", wsum="wtotals", pos="pos[b, ch, ")
    src += [
        "@cuda.jit",
        f"def fill(offsets, users, request_ts, ts, {cols}, chunk, pos, totals, wtotals,",
        "         values, weights):",
        "    g = cuda.grid(1)",
        "    nchunks = pos.shape[1]",
        "    b = g // nchunks",
        "    ch = g % nchunks",
        "    if b >= users.shape[0]:",
        "        return",
        f"    starts = cuda.local.array({K + 1}, int64)",
        "    _bounds(offsets, ts, users[b], request_ts[b], starts)",
        "    first = max(starts[0], offsets[users[b]] + ch * chunk)",
        f"    stop = min(starts[{K}], offsets[users[b]] + (ch + 1) * chunk)",
        "    if first >= stop:",
        "        return",
        "    k = _band_of(starts, first)",
        "    for i in range(first, stop):",
        "        while i >= starts[k + 1]:",
        "            k += 1",
        *indent(ev + body, 2),
        "",
    ]
    return "\n".join(src) + "\n"


def _fused(plan: KernelPlan, elem: str, layout: FusedLayout, ev: list[str]) -> list[str]:
    """The fused kernel: grid (items, dim tiles, slot groups), ``layout.threads`` threads.

    An item's events all lie in one time band ``k`` (the host cuts rows at band starts), so
    a block accumulates per slot and its partial sums belong to the bin of (slot, ``k``)
    (see :meth:`KernelPlan.bins`); the host adds them up per row and bin. Per round of
    ``threads`` events each thread evaluates one event into shared staging arrays (slot
    bits, already limited to slots with a window that reaches band ``k``; rows; weights).
    Then each warp takes staged events one at a time: it issues the row gathers of every
    table the event selects (several in flight), then walks the set slot bits and adds the
    rows into the block's shared ``[slots, dims]`` accumulators (shared atomics: the warps
    of a block share them). Lane ``l`` owns dimensions ``l``, ``l + 32``, ... of the tile,
    so a gather is one coalesced row segment. The block writes its accumulators, counts
    and weight sums as the item's partials: no global atomics.
    """
    K, D, N = len(plan.windows), plan.dim, len(plan.slots)
    T, DT, G = layout.threads, layout.dim_tile, layout.slot_group
    bins = plan.bins()
    W = (N + 31) // 32
    wexprs = sorted({s.weight for s in plan.slots if s.weight >= 0})
    wcol = {e: j for j, e in enumerate(wexprs)}
    NWV = max(len(wexprs), 1)
    fns = row_functions(plan)
    rowfn = row_fn_of(plan)
    tables = ", ".join(f"t{t.index}" for t in plan.tables)
    cols = ", ".join(f"c_{c}" for c in plan.columns)
    lanes = [(jj, f"lane + {32 * jj}" if jj else "lane") for jj in range(-(-DT // 32))]
    guard = DT % 32 != 0 or D % DT != 0

    def dim_ok(dd: str) -> str:
        return f"{dd} < {DT} and d0 + {dd} < {D}"

    active = []  # [band * W + word]: slots with a window reaching the band
    for k in range(K):
        for w in range(W):
            active.append(sum(1 << (s.index % 32) for s in plan.slots
                              if s.index // 32 == w and bins.bands[s.index][0] <= k))
    consts = [
        f"SLOT_WCOL = np.array({[wcol[s.weight] if s.weight >= 0 else -1 for s in plan.slots]},"
        " np.int64)",
        f"ACTIVE = np.array({active}, np.uint32)  # [band * {W} + word] -> slot bits",
        "",
    ]

    # -- stage: one thread, one event ------------------------------------------------
    stage: list[str] = []
    for w in range(W):
        bits = [f"(uint32({1 << (s.index % 32)}) if p{s.index} else uint32(0))"
                for s in plan.slots if s.index // 32 == w]
        stage.append(f"smk[tid, {w}] = uint32((" + " | ".join(bits) + f") & ACTIVE[k * {W} + {w}])")
    for f, (col, hashing, seed, n) in enumerate(fns):
        users_of = [s.index for s in plan.slots if rowfn[s.table] == f]
        fake = PlanTable(-1, "", col, n, 0, hashing, seed)
        if users_of:
            stage.append(f"if {' or '.join(f'p{x}' for x in users_of)}:")
            stage.append(f"    srw[tid, {f}] = int32({row_expr(fake, f'c_{col}[i]')})")
    for s in plan.slots:
        if s.weight >= 0:
            stage += [f"if p{s.index}:",
                      f"    w = e{s.weight}",
                      f"    if not (w > 0.0 and w < math.inf) and k >= {min_band(plan, s.index)}:",
                      f"        bad[b] = {s.index + 1}"]
    for e, j in wcol.items():
        stage += [f"swv[tid, {j}] = float32(e{e})", f"swd[tid, {j}] = e{e}"]

    # -- accumulate: one warp, one staged event ---------------------------------------
    gather: list[str] = []
    accum: list[str] = []
    for t in plan.tables:
        slots = plan.slots_of_table(t.index)
        if not slots:
            continue
        words: dict[int, int] = {}
        for sl in slots:
            words[sl.index // 32] = words.get(sl.index // 32, 0) | (1 << (sl.index % 32))
        lo, hi = min(s.index for s in slots), max(s.index for s in slots) + 1
        test = " or ".join(f"(m{w} & uint32({bits})) != 0" for w, bits in sorted(words.items()))
        gather.append(f"g{t.index} = slo < {hi} and shi > {lo} and ({test})")
        gather += [f"x{t.index}_{jj} = float32(0.0)" for jj, _ in lanes]
        gather.append(f"if g{t.index}:")
        gather.append(f"    r = srw[e, {rowfn[t.index]}]")
        for jj, dd in lanes:
            load = _cuda_elem(elem, t.index).replace(f"r{t.index}, d]", f"r, d0 + {dd}]")
            if guard:
                gather += [f"    if {dim_ok(dd)}:", f"        x{t.index}_{jj} = {load}"]
            else:
                gather.append(f"    x{t.index}_{jj} = {load}")
        accum.append(f"if g{t.index}:  # table {t.name}")
        for w, tb in sorted(words.items()):
            accum += [
                f"    bits = uint64(m{w}) & uint64({tb})",
                "    while bits != 0:",
                f"        j = {32 * w} + int64(cuda.ffs(bits)) - 1 - slo",
                "        bits = bits & (bits - uint64(1))",
                "        if j < 0 or j >= shi - slo:",
                "            continue",
                "        wc = SLOT_WCOL[slo + j]",
                "        f = float32(1.0) if wc < 0 else swv[e, wc]",
            ]
            for jj, dd in lanes:
                add = f"cuda.atomic.add(acc, (j, {dd}), x{t.index}_{jj} * f)"
                accum += ([f"        if {dim_ok(dd)}:", f"            {add}"] if guard
                          else [f"        {add}"])
            accum += [
                "        if counting and lane == 0:",
                "            cuda.atomic.add(cnt, j, 1)",
                "            if wc >= 0:",
                "                cuda.atomic.add(wsm, j, swd[e, wc])",
            ]

    return consts + [
        "@cuda.jit",
        "def bounds(offsets, users, request_ts, ts, starts):",
        "    b = cuda.grid(1)",
        "    if b < users.shape[0]:",
        "        _bounds(offsets, ts, users[b], request_ts[b], starts[b])",
        "",
        "@cuda.jit",
        f"def fused(items, {cols}, {tables}, part, cpart, wpart, bad):",
        f"    # items[it] = (batch row, first event, stop, band); {N} slots in groups of {G}, "
        f"dims in tiles of {DT}",
        "    it = cuda.blockIdx.x",
        f"    d0 = cuda.blockIdx.y * {DT}",
        f"    slo = cuda.blockIdx.z * {G}",
        f"    shi = min({N}, slo + {G})",
        "    counting = cuda.blockIdx.y == 0",
        "    tid = cuda.threadIdx.x",
        "    lane = tid % 32",
        "    warp = tid // 32",
        f"    acc = cuda.shared.array(({G}, {DT}), float32)",
        f"    cnt = cuda.shared.array({G}, int32)",
        f"    wsm = cuda.shared.array({G}, float64)",
        f"    smk = cuda.shared.array(({T}, {W}), uint32)",
        f"    srw = cuda.shared.array(({T}, {max(len(fns), 1)}), int32)",
        f"    swv = cuda.shared.array(({T}, {NWV}), float32)",
        f"    swd = cuda.shared.array(({T}, {NWV}), float64)",
        "    b = items[it, 0]",
        "    lo = items[it, 1]",
        "    hi = items[it, 2]",
        "    k = items[it, 3]",
        f"    for x in range(tid, {G * DT}, {T}):",
        f"        acc[x // {DT}, x % {DT}] = float32(0.0)",
        f"    for x in range(tid, {G}, {T}):",
        "        cnt[x] = 0",
        "        wsm[x] = 0.0",
        "    cuda.syncthreads()",
        f"    for first in range(lo, hi, {T}):",
        "        i = first + tid",
        "        if i < hi:",
        *indent(ev + stage, 3),
        "        else:",
        *[f"            smk[tid, {w}] = uint32(0)" for w in range(W)],
        "        cuda.syncthreads()",
        f"        for e in range(warp, {T}, {T // 32}):",
        *[f"            m{w} = smk[e, {w}]" for w in range(W)],
        *indent(gather + accum, 3),
        "        cuda.syncthreads()",
        f"    for x in range(tid, (shi - slo) * {DT}, {T}):",
        f"        j = x // {DT}",
        f"        dd = x % {DT}",
        f"        if d0 + dd < {D}:",
        "            part[it, slo + j, d0 + dd] = acc[j, dd]",
        "    if counting:",
        f"        for x in range(tid, shi - slo, {T}):",
        "            cpart[it, slo + x] = cnt[x]",
        "            wpart[it, slo + x] = wsm[x]",
        "",
    ]
