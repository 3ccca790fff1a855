"""Kernel plan -> readable Numba source, written to a cache file and imported.

The generated module is plain Python: one block per event that evaluates each distinct
expression and leaf once (``e3 = e1 / e2``, ``l4 = e3 > 0.5``), each slot predicate
(``p2 = l0 and l4``), then per table one row lookup guarded by ``p0 or p2 or ...`` and one
accumulation per selecting slot. It is logged at debug level (logger ``dv365.kernels``) and
written to ``$DV365_CACHE_DIR`` (default ``~/.cache/dv365/kernels``) as
``<plan key>_<backend>_<elem>.py`` so that Numba's ``cache=True`` can keep the machine code
between processes; the source is memoized in-process by the same key.

Backends:

* ``cpu``: ``njit(parallel=True)``, ``prange`` over the users of a batch. ``fused`` walks
  each user's bands backwards with a ``[slots, D]`` accumulator and reads every slice off its
  slot when it leaves the slice's window; ``count`` does the same without rows (counts and
  weight sums, the jagged path's first pass); ``fill`` writes the jagged rows and bag weights.
* ``cuda``: ``numba.cuda.jit``. ``fused``: one block per (user, chunk of events), one thread per
  embedding dimension holding one register accumulator per slot; band flushes are atomic
  adds into the output. ``count`` and ``fill``: one thread per (user, chunk), writing that
  chunk's counts and, after a scan on the host side, its rows.

Table elements are read as ``f32`` (fp32 tables), through a 65536-entry lookup table
``lut`` (fp16 and bf16 tables viewed as uint16 on CPU, which has no half types), or natively
on CUDA (fp16 as ``float16``; bf16 as uint16 bits shifted into a float32).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import math
import os
import sys
from pathlib import Path
from types import ModuleType

from dv365.kernels.plan import BoolExpr, KernelPlan, PlanLeaf, PlanTable

log = logging.getLogger("dv365.kernels")

CUDA_CHUNK_FUSED = 2048  # events per block of the fused CUDA kernel
CUDA_CHUNK_COUNT = 256  # events per thread of the count/fill CUDA kernels

_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB

POOL_CODES = {"mean": 0, "weighted_mean": 1, "sum": 2}


def cache_dir() -> Path:
    """Where generated kernel modules (and Numba's cache next to them) live."""
    root = os.environ.get("DV365_CACHE_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "dv365"
    return base / "kernels"


# ----------------------------------------------------------------------------- pieces
def _float(v: float) -> str:
    if math.isnan(v):
        return "math.nan"
    if math.isinf(v):
        return "math.inf" if v > 0 else "(-math.inf)"
    return repr(float(v))


_UNARY = {"neg": "(-{})", "ln": "math.log({})", "log1p": "math.log1p({})",
          "exp": "math.exp({})", "sqrt": "math.sqrt({})", "abs": "abs({})"}


def _expr_lines(plan: KernelPlan, cuda: bool) -> list[str]:
    lines = []
    for e in plan.exprs:
        if e.kind == "const":
            rhs = _float(e.value)
        elif e.kind == "field":
            rhs = f"float64(c_{e.op}[i])"
        elif e.kind == "unary":
            arg = f"e{e.args[0]}"
            if e.op == "sqrt":
                # math.sqrt of a negative number is NaN, as np.sqrt (never an exception).
                rhs = f"(math.sqrt({arg}) if {arg} >= 0.0 else math.nan)"
            elif e.op in ("ln", "log1p"):
                low = "0.0" if e.op == "ln" else "-1.0"
                rhs = (f"({_UNARY[e.op].format(arg)} if {arg} > {low} else "
                       f"((-math.inf) if {arg} == {low} else math.nan))")
            else:
                rhs = _UNARY[e.op].format(arg)
        else:
            a, b = (f"e{x}" for x in e.args)
            if e.op == "/":
                rhs = f"_div({a}, {b})"
            elif e.op == "^":
                rhs = f"_pow({a}, {b})"
            else:
                rhs = f"({a} {e.op} {b})"
        lines.append(f"e{e.index} = {rhs}")
    return lines


def _member_test(var: str, codes: tuple[int, ...]) -> str:
    if not codes:
        return "False"
    return "(" + " or ".join(f"{var} == {c}" for c in codes) + ")"


def _leaf_line(leaf: PlanLeaf) -> str:
    if leaf.kind == "compare":
        x = f"e{leaf.expr}"
        v = _float(leaf.value)
        if leaf.op == "!=":
            return f"l{leaf.index} = ({x} == {x}) and ({x} != {v})"
        return f"l{leaf.index} = {x} {leaf.op} {v}"
    var = f"v_{leaf.column}"
    test = _member_test(var, leaf.codes)
    if leaf.negated:
        test = f"(not {test})"
        if leaf.nullable:
            test = f"({var} != -1 and {test})"
    return f"l{leaf.index} = {test}"


def _bool(b: BoolExpr) -> str:
    if b.kind == "true":
        return "True"
    if b.kind == "leaf":
        return f"l{b.leaf}"
    joiner = " and " if b.kind == "and" else " or "
    if not b.args:
        return "True" if b.kind == "and" else "False"
    return "(" + joiner.join(_bool(a) for a in b.args) + ")"


def _row_expr(t: PlanTable, x: str) -> str:
    if t.hashing == "modulo":
        return f"({x} % {t.num_rows})"
    if t.hashing == "identity":
        return x
    return f"_hash_row(uint64({x}) ^ uint64({t.seed}), uint64({t.num_rows}))"


def _event_lines(plan: KernelPlan, cuda: bool) -> list[str]:
    """Loads, expressions, leaves and slot predicates of event ``i``."""
    lines = []
    member_columns = sorted({leaf.column for leaf in plan.leaves if leaf.kind == "member"},
                            key=plan.columns.index)
    for c in member_columns:
        lines.append(f"v_{c} = c_{c}[i]")
    lines += _expr_lines(plan, cuda)
    lines += [_leaf_line(leaf) for leaf in plan.leaves]
    lines += [f"p{s.index} = {_bool(s.predicate)}" for s in plan.slots]
    return lines


def _header(plan: KernelPlan, backend: str) -> list[str]:
    windows = ", ".join("None" if w is None else str(w) for w in plan.windows)
    return [
        f'"""Generated by dv365.kernels.codegen for plan {plan.key()} ({backend}).',
        "",
        f"{plan.summary()}.",
        f"Bands (windows, longest first): {windows}. Gap: {plan.gap_ms} ms.",
        *[f"slot {s.index}: table {plan.tables[s.table].name}, {_bool(s.predicate)}"
          + (f", weight e{s.weight}" if s.weight >= 0 else "") for s in plan.slots],
        '"""',
        "import math",
        "import numpy as np",
        "from numpy import float64, float32, int32, int64, uint64",
    ]


def _indent(lines: list[str], n: int) -> list[str]:
    pad = " " * (4 * n)
    return [pad + line if line else line for line in lines]


def _bounds_fn(plan: KernelPlan, decorator: str) -> list[str]:
    """starts[0..K]: band k is [starts[k], starts[k+1]); starts[K] is the gap cutoff."""
    k = len(plan.windows)
    body = [
        decorator,
        "def _bounds(offsets, ts, u, R, starts):",
        "    lo = offsets[u]",
        "    hi = offsets[u + 1]",
        f"    end = _first_at_or_after(ts, lo, hi, R - {plan.gap_ms})",
        f"    starts[{k}] = end",
    ]
    for j, w in enumerate(plan.windows):
        if w is None:
            body.append(f"    starts[{j}] = lo")
        else:
            body.append(f"    starts[{j}] = _first_at_or_after(ts, lo, end, R - {w})")
    return body


def _helpers(decorator: str) -> list[str]:
    return [
        decorator,
        "def _first_at_or_after(ts, lo, hi, t):",
        "    while lo < hi:",
        "        mid = (lo + hi) >> 1",
        "        if ts[mid] < t:",
        "            lo = mid + 1",
        "        else:",
        "            hi = mid",
        "    return lo",
        "",
        decorator,
        "def _hash_row(z, n):",
        "    # splitmix64, identical to dv365.slices.hashing.splitmix64 (uint64 wrap-around).",
        f"    z = z + uint64({_GOLDEN})",
        f"    z = (z ^ (z >> uint64(30))) * uint64({_M1})",
        f"    z = (z ^ (z >> uint64(27))) * uint64({_M2})",
        "    z = z ^ (z >> uint64(31))",
        "    return int64(z % n)",
        "",
        decorator,
        "def _div(a, b):",
        "    if b == 0.0:",
        "        if a != a or a == 0.0:",
        "            return math.nan",
        "        return math.inf if (a > 0.0) == (math.copysign(1.0, b) > 0.0) else -math.inf",
        "    return a / b",
        "",
        decorator,
        "def _pow(a, b):",
        "    # IEEE pow as np.power: negative base with a fractional exponent is NaN.",
        "    if a < 0.0 and b != math.floor(b):",
        "        return math.nan",
        "    if a == 0.0 and b < 0.0:",
        "        return math.inf",
        "    return a ** b",
        "",
    ]


def row_functions(plan: KernelPlan) -> list[tuple]:
    """Distinct (id column, hashing, seed, rows): tables that map ids the same way share one."""
    keys = []
    for t in plan.tables:
        key = (t.id_column, t.hashing, t.seed, t.num_rows)
        if key not in keys:
            keys.append(key)
    return keys


def _row_fn_of(plan: KernelPlan) -> dict[int, int]:
    keys = row_functions(plan)
    return {t.index: keys.index((t.id_column, t.hashing, t.seed, t.num_rows))
            for t in plan.tables}


def _min_band(plan: KernelPlan, slot: int) -> int:
    """The widest window of a slot's slices: events in older bands reach no slice."""
    return min(s.band for s in plan.slices_of_slot(slot))


# ----------------------------------------------------------------------------- CPU
def _fill_body(plan, *, count: str, wsum: str, pos: str) -> list[str]:
    """The jagged fill's per-event body (shared by the CPU and CUDA kernels): for each table
    an event is selected into, its row once, then the row and bag weight of every slice that
    selects it, written at that slice's next position (``pos`` + slice index + ``]``)."""
    body: list[str] = []
    for t in plan.tables:
        slots = plan.slots_of_table(t.index)
        if not slots:
            continue
        body.append(f"if {' or '.join(f'p{s.index}' for s in slots)}:")
        body.append(f"    r{t.index} = {_row_expr(t, f'c_{t.id_column}[i]')}")
        for s in slots:
            body.append(f"    if p{s.index}:")
            if s.weight >= 0:
                body.append(f"        w = e{s.weight}")
            for sl in plan.slices_of_slot(s.index):
                if sl.pooling == "mean":
                    wexpr = f"1.0 / {count}[b, {sl.index}]"
                elif sl.pooling == "weighted_mean":
                    wexpr = f"w / {wsum}[b, {sl.index}]"
                else:
                    wexpr = "w" if s.weight >= 0 else "1.0"
                body.append(f"        if k >= {sl.band}:")
                body.append(f"            j = {pos}{sl.index}]")
                body.append(f"            values[j] = r{t.index}")
                body.append(f"            weights[j] = {wexpr}")
                body.append(f"            {pos}{sl.index}] = j + 1")
    return body


def _cpu_elem(elem: str, t: int) -> str:
    return f"t{t}[r{t}, d]" if elem == "f32" else f"lut[t{t}[r{t}, d]]"


def _cpu_source(plan: KernelPlan, elem: str) -> str:
    K, D, S, N = len(plan.windows), plan.dim, len(plan.slices), len(plan.slots)
    inline = "@njit(cache=True, inline='always', error_model='numpy')"
    kernel = "@njit(parallel=True, cache=True, error_model='numpy')"
    cols = ", ".join(f"c_{c}" for c in plan.columns)
    tables = ", ".join(f"t{t.index}" for t in plan.tables)
    ev = _event_lines(plan, cuda=False)
    weighted = [s for s in plan.slots if s.weight >= 0]

    src = _header(plan, "cpu") + ["from numba import njit, prange", ""]
    src += _helpers(inline) + _bounds_fn(plan, inline) + [""]

    def weight_check(slot) -> list[str]:
        return [f"w = e{slot.weight}",
                f"if not (w > 0.0 and w < math.inf) and k >= {_min_band(plan, slot.index)}:",
                f"    bad[b] = {slot.index + 1}"]

    # fused -----------------------------------------------------------------------
    # Two passes per user. A: evaluate every event (slot bits, rows, weights) into small
    # per-user arrays. B: walk the bands backwards and gather rows. B's loop body is short and
    # branch-light, so the CPU keeps many independent row misses in flight; with predicates
    # evaluated between gathers (one pass) it overlapped far fewer.
    W = (N + 63) // 64
    wexprs = sorted({s.weight for s in plan.slots if s.weight >= 0})
    wcol = {e: j for j, e in enumerate(wexprs)}
    rowfn = _row_fn_of(plan)
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
        pass_a.append(f"    rw[j, {fi}] = {_row_expr(fake, f'c_{col}[i]')}")
    for s in plan.slots:
        if s.weight >= 0:
            pass_a.append(f"if p{s.index}:")
            pass_a += _indent(weight_check(s), 1)
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
        *_indent(ev + pass_a, 3),
        f"        acc = np.zeros(({N}, {D}), np.float32)",
        f"        cnt = np.zeros({N}, np.int64)",
        f"        wsum = np.zeros({N}, np.float64)",
        f"        for k in range({K - 1}, -1, -1):",
        "            for i in range(starts[k], starts[k + 1]):",
        *_indent(body, 4),
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
            body += _indent(weight_check(s), 1)
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
        *_indent(ev + body, 4),
        f"            for s in range({S}):",
        "                if slice_band[s] == k:",
        "                    counts[b, s] = cnt[slice_slot[s]]",
        "                    wsums[b, s] = wsum[slice_slot[s]]",
        "",
    ]

    # fill --------------------------------------------------------------------------
    body = _fill_body(plan, count="counts", wsum="wsums", pos="pos[")
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
        *_indent(fill_ev + body, 3),
        "",
    ]
    return "\n".join(src) + "\n"


# ----------------------------------------------------------------------------- CUDA
def _cuda_elem(elem: str, t: int) -> str:
    if elem == "f32":
        return f"t{t}[r{t}, d]"
    if elem == "f16":
        return f"float32(t{t}[r{t}, d])"
    return f"_bf16(t{t}[r{t}, d])"


def _cuda_source(plan: KernelPlan, elem: str, simulator: bool) -> str:
    K, D, S, N = len(plan.windows), plan.dim, len(plan.slices), len(plan.slots)
    dev = "@cuda.jit(device=True, inline=True)"
    cols = ", ".join(f"c_{c}" for c in plan.columns)
    tables = ", ".join(f"t{t.index}" for t in plan.tables)
    ev = _event_lines(plan, cuda=True)

    src = _header(plan, "cuda") + ["from numba import cuda", ""]
    if simulator:
        src += ["def _bf16(x):",
                "    return np.array([np.uint32(x) << np.uint32(16)], np.uint32)"
                ".view(np.float32)[0]", ""]
    else:
        src += ["from numba.cuda import libdevice", "", dev, "def _bf16(x):",
                "    return libdevice.int_as_float(int32(x) << 16)", ""]
        pass
    helpers = _helpers(dev)
    if simulator:
        # The simulator multiplies NumPy uint64 scalars, which warn on the intended wrap.
        helpers = [line.replace("def _hash_row(z, n):",
                                "def _hash_row(z, n):\n    with np.errstate(over='ignore'):\n"
                                "        return _hash_row_wrapping(z, n)\n\n\n"
                                "def _hash_row_wrapping(z, n):") for line in helpers]
    src += helpers
    src += [
        dev,
        "def _band_of(starts, i):",
        "    k = 0",
        f"    while k < {K - 1} and i >= starts[k + 1]:",
        "        k += 1",
        "    return k",
        "",
    ]
    src += _bounds_fn(plan, dev) + [""]

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
        cflushes += [f"if k == {k}:", *_indent(cflush(k), 1)]
    body = [f"m{w} = uint64(0)" for w in range(W)]
    for s in plan.slots:
        body.append(f"if p{s.index}:")
        body.append(f"    n{s.index} += 1")
        body.append(f"    m{s.index // 64} |= uint64({1 << (s.index % 64)})")
        if s.weight >= 0:
            body.append(f"    w = e{s.weight}")
            body.append(f"    if not (w > 0.0 and w < math.inf) and k >= {_min_band(plan, s.index)}:")
            body.append(f"        bad[b] = {s.index + 1}")
            body.append(f"    w{s.index} += w")
    body.append("q = base[b] + i - off")
    body += [f"masks[q, {w}] = m{w}" for w in range(W)]
    # Rows once per event and distinct row function (64-bit hashing and modulo are costly
    # on a GPU; the fused kernel's D threads would each repeat them).
    for j, (col, hashing, seed, n) in enumerate(row_functions(plan)):
        fake = PlanTable(-1, "", col, n, 0, hashing, seed)
        body.append(f"rows[q, {j}] = int32({_row_expr(fake, f'c_{col}[i]')})")
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
        *_indent(cflushes, 3),
        "            k -= 1",
        *_indent(ev + body, 2),
        "        i -= 1",
        "    while k >= 0:",
        *_indent(cflushes, 2),
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
        flushes += [f"if k == {k}:", *_indent(flush(k), 1)]
    rowfn = _row_fn_of(plan)
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
        *_indent(flushes, 3),
        "            k -= 1",
        *_indent(body, 2),
        "        i -= 1",
        "    while k >= 0:",
        *_indent(flushes, 2),
        "        k -= 1",
        "",
    ]

    # fill: one thread per (user, chunk), forwards, at the chunk's scanned positions ----
    body = _fill_body(plan, count="totals", wsum="wtotals", pos="pos[b, ch, ")
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
        *_indent(ev + body, 2),
        "",
    ]
    return "\n".join(src) + "\n"


# ----------------------------------------------------------------------------- loading
_MODULES: dict[str, ModuleType] = {}


def serial_cpu() -> bool:
    """``DV365_KERNEL_SERIAL=1`` compiles CPU kernels without ``parallel=True``.

    Same source with ``range`` for ``prange``; it compiles about 4x faster, which is what
    tests over many random specs need. Production paths leave it unset.
    """
    return os.environ.get("DV365_KERNEL_SERIAL", "") not in ("", "0")


def generate(plan: KernelPlan, backend: str, elem: str = "f32", *, simulator: bool = False
             ) -> str:
    """The kernel module's source for ``backend`` ("cpu" or "cuda") and table element kind."""
    if backend == "cpu":
        source = _cpu_source(plan, elem)
        if serial_cpu():
            source = source.replace("parallel=True", "parallel=False").replace(
                "in prange(", "in range(")
        return source
    if backend == "cuda":
        return _cuda_source(plan, elem, simulator)
    raise ValueError(f"no code generator for backend {backend!r}")


def load(plan: KernelPlan, backend: str, elem: str = "f32", *, simulator: bool = False
         ) -> ModuleType:
    """Generate (or reuse) and import the kernel module of ``plan`` for ``backend``."""
    variant = "sim" if simulator else ("serial" if backend == "cpu" and serial_cpu() else "")
    tag = f"{plan.key()}_{backend}{variant}_{elem}"
    module = _MODULES.get(tag)
    if module is not None:
        return module
    source = generate(plan, backend, elem, simulator=simulator)
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    name = f"dv365_kernel_{tag}_{digest}"
    log.debug("generated %s kernels for plan %s (%s):\n%s", backend, plan.key(),
              plan.summary(), source)
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    if not path.exists() or path.read_text() != source:
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(source)
        os.replace(tmp, path)  # atomic: a concurrent process never imports half a file
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    _MODULES[tag] = module
    return module
