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

The fused kernel's generator is :mod:`dv365.kernels.cuda_entries`; with
``CUDA_FUSED_DESIGN = "dense"`` it is :mod:`dv365.kernels.cuda_dense` (the earlier
``fused0``, ``fused1``, ...: register accumulators, every slot of a table group tested per
event, counts from ``tally``); docs/kernels.md says why the entries design replaced it.
This module holds the switches of all of them, the shared pieces and the other kernels.

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
# Entries staged at a time (a tile shrinks to fit). H200, D=64: 128 took fused_entries
# 24.5 ms, 256 25.6 (7.9 kB of shared memory a block instead of 6.4: 26 blocks per SM, not 31).
CUDA_ENTRY_CAP = 128
SEGMENT_SLOTS = 20  # slots of one table per entry (bits 32..51 of an entry)
# Shared memory / L1 split asked for the fused kernels ("" leaves it to the driver).
CUDA_CARVEOUT = "MaxShared"
CUDA_ENTRY_COUNTS = True  # False only to measure what counting costs (counts come out 0)
CUDA_ENTRY_OFFSET32 = True  # 32-bit element offsets when the packed tables allow them
# Registers per thread asked of ptxas for mark / mark_entries (0: ptxas decides). H200,
# D=64: counting mark_entries took 80 (6 blocks per SM); held to 64 (8 blocks; ptxas
# spills 28 bytes) it took 6.8 ms instead of 7.9.
CUDA_MARK_MAX_REGISTERS = 64
# Events each thread of a counting mark_entries takes (see _mark_kernel; H200, D=64:
# 4 took it to 5.0 ms from 6.8 with 1).
CUDA_MARK_EVENTS_PER_THREAD = 4
# Where the entries design counts: "lanes" (the fused kernel, per entry, lane l counting
# the entry's slot bit l), "slot_loop" (the fused kernel's slot loop, thread 0 counting each
# slot it adds) or "mark" (``mark_entries``, over a block of events: counts by shared-memory
# atomics, weight sums per thread, then one global atomic per slice and block). H200, D=64:
# "mark" fused 24.4 ms + mark 5.0; "lanes" 33.9 + 3.3; "slot_loop" 32.0 + 3.4.
CUDA_ENTRY_COUNTING = "mark"
# Slot groups of the entries kernel: a block holds one group's sums, so more groups, more
# blocks per SM (H200, reels.slice D=64: 1 group 58 ms, 2: 39, 3: 34, 4: 31, 6: 29, 8: 30).
# At least CUDA_ENTRY_GROUPS, and enough that a block's sums take at most
# CUDA_ENTRY_GROUP_BYTES (D=256 in 256-dim blocks: 8 groups).
CUDA_ENTRY_GROUPS = 4
CUDA_ENTRY_GROUP_BYTES = 10_000
# Dims per block of the entries kernel (a warp; D=256 in one block: 81 ms on the H200,
# in blocks of 128: 102 ms, of 64: 134 ms, each block walking the same entries).
CUDA_ENTRY_DIMS_PER_BLOCK = 256
# Entry groups a warp walks at once (lanes split between them; see entry_walkers): each
# step of the walk then serves one entry of each.
CUDA_ENTRY_WALKERS = 1


def entry_walkers(dim: int) -> int:
    """Entry groups one warp of the entries kernel walks at once, each on ``32 / walkers``
    lanes: the most, up to ``CUDA_ENTRY_WALKERS``, that leave a lane at most 8 of the
    block's dims (D=64: 2 walkers of 16 lanes, 4 dims each; D=256: 1 walker, 8 dims)."""
    db = dims_per_block(dim)
    if db % 32:
        return 1
    h = max(1, CUDA_ENTRY_WALKERS)
    while h > 1 and (32 % h or db % (32 // h) or db // (32 // h) > 8):
        h //= 2
    return h


def dims_per_thread(dim: int) -> int:
    """Dims each fused thread owns. One thread's control work (entry decoding, slot bits, row
    addresses, band checks) then serves several dims. The entries kernel runs one warp per
    block, a walker's ``32 / walkers`` lanes splitting the block's dims (when 32 divides
    them); the dense kernels ``CUDA_DIMS_PER_THREAD`` when a block's dims split into whole
    warps that way; else 1."""
    db = dims_per_block(dim)
    if CUDA_FUSED_DESIGN == "entries":
        return db // (32 // entry_walkers(dim)) if db % 32 == 0 else 1
    v = CUDA_DIMS_PER_THREAD
    return v if db % (32 * v) == 0 else 1


def fused_threads(dim: int) -> int:
    """Threads per block of the fused kernels."""
    db = dims_per_block(dim)
    if CUDA_FUSED_DESIGN == "entries":
        return 32 if db % 32 == 0 else db
    return db // dims_per_thread(dim)


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


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _fused_jit(simulator: bool) -> str:
    if simulator or not CUDA_CARVEOUT:
        return "@cuda.jit"
    return f"@cuda.jit(shared_memory_carveout={CUDA_CARVEOUT!r})"


def _mark_jit(simulator: bool) -> str:
    if simulator or not CUDA_MARK_MAX_REGISTERS:
        return "@cuda.jit"
    return f"@cuda.jit(max_registers={CUDA_MARK_MAX_REGISTERS})"


def _mark_kernel(plan: KernelPlan, entries: bool, simulator: bool = False) -> list[str]:
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
    counting = entries and CUDA_ENTRY_COUNTING == "mark"
    # weight sums per (weighted slot, band) and thread: float64 shared atomics compile to a
    # compare-and-swap loop that the lanes of a warp, adding to the same sum, serialize
    # (mark took 6.6 ms instead of 3.0 on the H200); each thread adds to a column of its
    # own, the block sums the columns once at its end
    TM = CUDA_MARK_THREADS
    wslot = {sl.index: j for j, sl in enumerate(x for x in plan.slots if x.weight >= 0)}
    NWK = len(wslot) * K
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
                body.append(f"        mw[({wslot[s.index] * K} + k) * {TM} + t] += w")
    body.append("q = base[b] + i - offsets[users[b]]")
    # mark_entries writes slot bits and rows only when the jagged output reads them too
    def for_jagged(lines: list[str]) -> list[str]:
        return ["if jagged:", *indent(lines, 1)] if entries and lines else lines

    body += for_jagged([f"masks[q * {W} + {w}] = m{w}" for w in range(W)])
    # Rows once per event and distinct row function: 64-bit hashing and modulo are costly
    # on a GPU, and the fused kernel's D threads would each repeat them.
    for j, (col, hashing, seed, n) in enumerate(row_functions(plan)):
        fake = PlanTable(-1, "", col, n, 0, hashing, seed)
        body.append(f"r{j} = int32({row_expr(fake, f'c_{col}[i]')})")
    body += for_jagged([f"rows[q * {R} + {j}] = r{j}" for j in range(R)])
    body += [f"wvals[q * {NWS} + {j}] = e{e}" for e, j in wcol.items()]
    args = "base, bad, masks, wvals, rows"
    if entries:
        args += ", nsel, ents, jagged"
        rowfn, offs = row_fn_of(plan), table_offsets(plan)
        segs = cuda_entries.segments(plan)
        for grp_index, grp in enumerate(cuda_entries.segment_groups(plan)):
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
        _mark_jit(simulator),
        f"def {'mark_entries' if entries else 'mark'}(offsets, users, starts, {cols}, {args}"
        + (", counts, wsums):" if counting else "):"),
        "    b = cuda.blockIdx.x",
        "    i = starts[b, 0] + cuda.blockIdx.y * cuda.blockDim.x + cuda.threadIdx.x",
    ]
    name = "MARK_ENTRIES_EVENTS" if entries else "MARK_EVENTS"
    if not counting:
        return [f"{name} = {TM}  # events per block", ""] + head + [
            f"    if i >= starts[b, {K}]:",
            "        return",
            *indent(_band_lines(K), 1),
            *indent(event_lines(plan, cuda=True) + body, 1),
            "",
        ]
    # A counting block takes CUDA_MARK_EVENTS_PER_THREAD events a thread: its zeroing, sums
    # and per-slice global atomics are then paid per that many events.
    EPT = max(1, CUDA_MARK_EVENTS_PER_THREAD)
    head[-1] = f"    i0 = starts[b, 0] + cuda.blockIdx.y * {TM * EPT} + cuda.threadIdx.x"
    # the block's events (all of row b) count per (slot, band) in shared memory; a slice
    # of band j then adds the counts of bands j.. (its window holds the newer bands)
    slot_of = [sl.slot for sl in plan.slices]
    band_of = [sl.band for sl in plan.slices]
    return [
        f"{name} = {TM * EPT}  # events per block",
        f"MARK_SLICE_SLOT = np.array({slot_of or [0]}, np.int64)",
        f"MARK_SLICE_BAND = np.array({band_of or [0]}, np.int64)",
        "MARK_SLICE_WSLOT = np.array("
        f"{[wslot.get(sl.slot, -1) for sl in plan.slices] or [0]}, np.int64)",
        "",
        *head,
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
        *indent(_band_lines(K), 3),
        *indent(event_lines(plan, cuda=True) + body, 3),
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

    src += _mark_kernel(plan, entries=False, simulator=simulator)
    if CUDA_FUSED_DESIGN == "entries":
        src += _mark_kernel(plan, entries=True, simulator=simulator)
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

    if CUDA_FUSED_DESIGN == "entries":
        src += cuda_entries.fused_source(plan, elem, wcol, _fused_jit(simulator))
    else:
        src += cuda_dense.fused_sources(plan, elem, wcol, _fused_jit(simulator))

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


# The fused-kernel generators read this module's switches when called; imported last so
# that either module can be imported first.
from dv365.kernels import cuda_dense, cuda_entries  # noqa: E402
