"""Slice kernels at paper scale against a straightforward PyTorch baseline, in one process.

Data: ``--users`` users x ``--events`` events each (paper mean 40,000), a year of history,
15% explicit events, Zipf-skewed ids, request time one hour after the last event (so the
24h gap applies); ``slices/reels.slice`` compiled against the data's vocabulary, its tables
resized to the paper profile (media 2^21, author 2^19 rows) and ``--dim``.

Baseline (what one writes first in PyTorch): per slice, a boolean mask over all events of
the batch (timeline, gap, window, predicate), ``nonzero``, ``bincount`` for bag offsets and
``F.embedding_bag`` (mean; weighted means as weighted sums divided by the weight sums).
The jagged baseline is the same slicing step without the pooling (rows, lengths and bag
weights per slice, concatenated key-major).

Roofline: the bytes an event must move (the columns the plan reads, plus one table row for
each distinct table any of its slices selects it for, measured on this data) against the
achieved rate. Prints one JSON document (and writes it with ``--out``).

    python benchmarks/kernels.py --device cpu --users 8 --dim 64 --dtype float32
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dv365.data.schema import (  # noqa: E402
    DEFAULT_VOCAB, ENUM_COLUMNS, EVENT_COLUMN_DTYPES, TIMELINES, DatasetMeta)
from dv365.data.vocabulary import Vocabulary  # noqa: E402
from dv365.durations import DAY_MS, HOUR_MS  # noqa: E402
from dv365.slices import ir as I  # noqa: E402

PAPER_ROWS = {"media_id": 2**21, "author_id": 2**19, "topic_id": 2**14}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class Store:
    """A TimelineStore-shaped synthetic store (the benchmark does not need Parquet)."""

    def __init__(self, user_ids, offsets, columns, meta):
        self.user_ids, self.offsets, self.columns, self.meta = user_ids, offsets, columns, meta


def synthetic_store(n_users: int, events: int, seed: int = 0) -> Store:
    rng = np.random.default_rng(seed)
    n = n_users * events
    end = 1_760_000_000_000
    ts = np.sort(end - rng.integers(0, 365 * DAY_MS, (n_users, events)), axis=1).ravel()
    tl = (rng.random(n) >= 0.15).astype(np.int8)  # 15% explicit
    explicit = tl == 0
    media_type = rng.choice(3, n, p=[0.75, 0.15, 0.10]).astype(np.int8)
    vdur = rng.uniform(3, 120, n).astype(np.float32)
    vdur[media_type == 1] = np.nan  # photos
    dwell = rng.lognormal(2.3, 1.2, n).astype(np.float32)
    dwell[explicit & (rng.random(n) < 0.5)] = np.nan
    columns = {
        "ts": ts.astype(np.int64),
        "timeline": tl,
        "media_id": (rng.zipf(1.2, n) * 7919 + rng.integers(0, 7919, n)) % 50_000_000,
        "author_id": (rng.zipf(1.3, n) * 104729) % 5_000_000,
        "topic_id": (rng.zipf(1.5, n)) % 20_000,
        "media_type": media_type,
        "surface": rng.choice(4, n, p=[0.5, 0.3, 0.15, 0.05]).astype(np.int8),
        "action": np.where(explicit, rng.integers(0, 8, n), -1).astype(np.int8),
        "video_duration": vdur,
        "dwell_time": dwell,
    }
    for c in ("media_id", "author_id", "topic_id"):
        columns[c] = columns[c].astype(np.int64)
    offsets = np.arange(0, n + 1, events, dtype=np.int64)
    meta = DatasetMeta(kind="events", vocab={k: list(v) for k, v in DEFAULT_VOCAB.items()})
    return Store(np.arange(n_users, dtype=np.int64), offsets, columns, meta)


def request_times(store: Store) -> np.ndarray:
    """Each user's request time: an hour after their last event (the 24h gap applies)."""
    return (store.columns["ts"][store.offsets[1:] - 1] + HOUR_MS).astype(np.int64)


def resized(ir: I.SpecIR, dim: int, paper_rows: bool = False) -> I.SpecIR:
    """``ir`` with every table ``dim`` wide (and, with ``paper_rows``, the paper profile's
    rows for the id columns it knows)."""
    tables = tuple(
        t.model_copy(update={"dim": dim, "num_rows": PAPER_ROWS.get(t.id_column, t.num_rows)
                             if paper_rows else t.num_rows})
        for t in ir.tables)
    return I.SpecIR(gap_ms=ir.gap_ms, tables=tables, slices=ir.slices, vocab=ir.vocab,
                    origins=ir.origins)


def reels_ir(dim: int, paper_rows: bool = True) -> I.SpecIR:
    from dv365.slices.compile import compile_spec

    return resized(compile_spec(ROOT / "slices" / "reels.slice"), dim, paper_rows)


def random_tables(ir: I.SpecIR, dtype: torch.dtype, device: str) -> dict[str, torch.Tensor]:
    g = torch.Generator(device=device).manual_seed(0)
    out = {}
    for t in ir.tables:
        x = torch.empty((t.num_rows, t.dim), dtype=torch.float32, device=device)
        out[t.name] = x.uniform_(-1, 1, generator=g).to(dtype)
    return out


# ----------------------------------------------------------------------------- baseline
class TorchBaseline:
    """Per-slice masks over the whole batch, then embedding_bag: the straightforward way."""

    def __init__(self, ir: I.SpecIR, store: Store, users: np.ndarray, times: np.ndarray,
                 device: str):
        self.ir, self.device = ir, device
        self.codes = Vocabulary.of(store.meta)
        offsets = store.offsets
        idx = np.concatenate([np.arange(offsets[u], offsets[u + 1]) for u in users])
        lens = offsets[users + 1] - offsets[users]
        self.B = len(users)
        self.n_events = int(lens.sum())
        dev = torch.device(device)
        self.cols = {c: torch.from_numpy(np.asarray(v)[idx]).to(dev)
                     for c, v in store.columns.items()}
        self.bag_of_event = torch.from_numpy(np.repeat(np.arange(len(users)), lens)).to(dev)
        self.req = torch.from_numpy(np.repeat(times, lens)).to(dev)

    # IR -> torch, float64 like the reference
    def expr(self, e):
        if isinstance(e, I.Const):
            return torch.tensor(e.value, dtype=torch.float64, device=self.device)
        if isinstance(e, I.FieldRef):
            return self.cols[e.field].double()
        if isinstance(e, I.Unary):
            a = self.expr(e.arg)
            return {"neg": torch.neg, "ln": torch.log, "log1p": torch.log1p, "exp": torch.exp,
                    "sqrt": torch.sqrt, "abs": torch.abs}[e.op](a)
        a, b = self.expr(e.left), self.expr(e.right)
        return {"+": torch.add, "-": torch.sub, "*": torch.mul, "/": torch.div,
                "^": torch.pow}[e.op](a, b)

    def pred(self, p, name):
        if isinstance(p, I.TruePred):
            return torch.ones_like(self.bag_of_event, dtype=torch.bool)
        if isinstance(p, (I.And, I.Or)):
            masks = [self.pred(a, name) for a in p.args]
            out = masks[0]
            for m in masks[1:]:
                out = (out & m) if isinstance(p, I.And) else (out | m)
            return out
        if isinstance(p, I.Compare):
            v = self.expr(p.expr)
            ops = {"<": torch.lt, "<=": torch.le, ">": torch.gt, ">=": torch.ge, "==": torch.eq,
                   "!=": torch.ne}
            return ~torch.isnan(v) & ops[p.op](v, p.value)
        col = self.cols[p.field]
        if p.field in ENUM_COLUMNS:
            wanted = [self.codes.code(p.field, v, slice_name=name, where=None) for v in p.values]
            defined = col != -1
        else:
            wanted, defined = list(p.values), torch.ones_like(col, dtype=torch.bool)
        inside = torch.isin(col, torch.tensor(wanted, dtype=col.dtype, device=self.device))
        return defined & (~inside if p.negated else inside)

    def rows(self, table: I.Table) -> torch.Tensor:
        x = self.cols[table.id_column]
        if table.hashing.kind == "modulo":
            return torch.remainder(x, table.num_rows)
        if table.hashing.kind == "identity":
            return x
        # splitmix64 in int64 two's complement: wrapping products are the same bits; shifts
        # must be logical, hence the masks.
        def shr(z, k):
            return (z >> k) & ((1 << (64 - k)) - 1)

        def s64(v):
            return v - (1 << 64) if v >= (1 << 63) else v

        seed = table.hashing.seed & (2**64 - 1)
        z = x ^ s64(seed)
        z = z + s64(0x9E3779B97F4A7C15)
        z = (z ^ shr(z, 30)) * s64(0xBF58476D1CE4E5B9)
        z = (z ^ shr(z, 27)) * s64(0x94D049BB133111EB)
        z = z ^ shr(z, 31)
        # unsigned modulo of a 64-bit value: split into the high bit and the rest.
        n = table.num_rows
        hi = (z < 0).long()
        lo = z & ((1 << 63) - 1)
        return (lo % n + hi * ((1 << 63) % n)) % n

    def select(self, s: I.Slice):
        """(event positions, weights-or-None) of one slice over the whole batch."""
        ts = self.cols["ts"]
        mask = (self.cols["timeline"] == TIMELINES.index(s.timeline))
        mask &= ts < self.req - self.ir.gap_ms
        if s.window_ms is not None:
            mask &= ts >= self.req - s.window_ms
        mask &= self.pred(s.predicate, s.name)
        idx = torch.nonzero(mask).squeeze(1)
        w = None
        if s.weight is not None and s.pooling != "mean":
            w = self.expr(s.weight)[idx]
        return idx, w

    def pooled(self, tables: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        out = torch.zeros((self.B, len(self.ir.slices), self.ir.dim), device=self.device)
        counts = torch.zeros((self.B, len(self.ir.slices)), dtype=torch.int64,
                             device=self.device)
        rows = {t.name: self.rows(t) for t in self.ir.tables}
        for j, s in enumerate(self.ir.slices):
            idx, w = self.select(s)
            bag = self.bag_of_event[idx]
            lengths = torch.bincount(bag, minlength=self.B)
            offsets = torch.cumsum(lengths, 0) - lengths
            table = tables[s.table]
            r = rows[s.table][idx]
            if w is None:
                mode = "mean" if s.pooling == "mean" else "sum"
                v = F.embedding_bag(r, table, offsets, mode=mode)
            else:
                v = F.embedding_bag(r, table, offsets, mode="sum",
                                    per_sample_weights=w.to(table.dtype))
                if s.pooling == "weighted_mean":
                    wsum = torch.zeros(self.B, dtype=torch.float64, device=self.device)
                    wsum.index_add_(0, bag, w)
                    v = v.float() / wsum.clamp_min(1e-30)[:, None].float()
            out[:, j] = v.float()
            counts[:, j] = lengths
        return out, counts

    def jagged(self):
        rows = {t.name: self.rows(t) for t in self.ir.tables}
        lengths, values, weights = [], [], []
        for s in self.ir.slices:
            idx, w = self.select(s)
            bag = self.bag_of_event[idx]
            n = torch.bincount(bag, minlength=self.B)
            if s.pooling == "mean":
                bw = 1.0 / n[bag].double()
            elif s.pooling == "weighted_mean":
                wsum = torch.zeros(self.B, dtype=torch.float64, device=self.device)
                wsum.index_add_(0, bag, w)
                bw = w / wsum[bag]
            else:
                bw = w if w is not None else torch.ones_like(idx, dtype=torch.float64)
            lengths.append(n)
            values.append(rows[s.table][idx])
            weights.append(bw.float())
        return torch.cat(lengths), torch.cat(values), torch.cat(weights)


# ----------------------------------------------------------------------------- roofline
def rows_per_event(ir: I.SpecIR, base: TorchBaseline) -> float:
    """Mean number of distinct tables whose row an event must fetch (measured)."""
    touched = {t.name: torch.zeros_like(base.bag_of_event, dtype=torch.bool) for t in ir.tables}
    for s in ir.slices:
        idx, _ = base.select(s)
        touched[s.table][idx] = True
    return float(sum(m.sum().item() for m in touched.values())) / base.n_events


def bytes_per_event(plan, ir: I.SpecIR, rows: float, elem_bytes: int) -> float:
    cols = sum(EVENT_COLUMN_DTYPES[c].itemsize for c in ("ts", *plan.columns))
    return cols + rows * ir.dim * elem_bytes


# ----------------------------------------------------------------------------- timing
def timed(fn, repeats: int, device: str) -> tuple[float, object]:
    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    t0 = time.perf_counter()
    result = fn()  # warm-up (compiles)
    sync()
    # Progress on stderr, so that a run cut off by a time limit still says how far it got.
    print(f"warm-up (compile) {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        sync()
        times.append(time.perf_counter() - t0)
    print(f"median {statistics.median(times) * 1e3:.1f} ms of {repeats}", file=sys.stderr,
          flush=True)
    return statistics.median(times), result


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--jagged-users", type=int, default=0,
                    help="users for the jagged comparison (default: --users)")
    ap.add_argument("--events", type=int, default=40_000)
    ap.add_argument("--dims", default="64", help="comma-separated table dims")
    ap.add_argument("--dtypes", default="float32",
                    help="comma-separated table dtypes (float32, float16, bfloat16)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--baseline-repeats", type=int, default=3)
    ap.add_argument("--skip-jagged", action="store_true")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)

    device = args.device
    store = synthetic_store(args.users, args.events)
    users = np.arange(args.users, dtype=np.int64)
    times = request_times(store)
    results = []
    base = None
    for dim in (int(d) for d in args.dims.split(",")):
        ir = reels_ir(dim)
        base = TorchBaseline(ir, store, users, times, device) if base is None else base
        base.ir = ir
        for dtype in args.dtypes.split(","):
            results.append(run_config(args, ir, store, users, times, base, dim, dtype))
            skip = True  # the jagged comparison does not depend on dims and dtypes
            args.skip_jagged = skip
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)
    return results


def launcher(device: str, tuning=None, phases: dict | None = None):
    """The launcher a kernel measurement runs (phases: seconds per phase, synchronized)."""
    if device == "cuda":
        from dv365.kernels.cuda_launch import CudaLauncher
        from dv365.kernels.cuda_tuning import DEFAULT_TUNING

        return CudaLauncher(tuning or DEFAULT_TUNING, phases=phases)
    from dv365.kernels.cpu_launch import CpuLauncher

    return CpuLauncher()


def run_config(args, ir, store, users, times, base, dim, dtype_name, tuning=None) -> dict:
    """Fused (and unless ``args.skip_jagged``, jagged) output of one (dim, dtype, tuning)
    against the baseline, with phases on CUDA."""
    from dv365.kernels.jagged_slices import row_limits, validate
    from dv365.kernels.launch import prepare

    device = args.device
    tables = random_tables(ir, DTYPES[dtype_name], device)
    run = launcher(device, tuning)
    launch = prepare(ir, store, users, times)
    plan = launch.plan
    n_events = base.n_events
    # prepare is part of a call: it is what pool_fused does before launching
    t_kernel, (pooled, counts) = timed(
        lambda: run.pooled(prepare(ir, store, users, times), tables), args.repeats, device)
    t_base, (b_pooled, b_counts) = timed(lambda: base.pooled(tables), args.baseline_repeats,
                                         device)
    phases: dict[str, float] = {}
    if device == "cuda":
        launcher(device, tuning, phases).pooled(prepare(ir, store, users, times), tables)
    counts_equal = bool(torch.equal(counts.cpu(), b_counts.cpu()))
    max_err = float((pooled.float().cpu() - b_pooled.float().cpu()).abs().max())
    rows = rows_per_event(ir, base)
    elem = torch.tensor([], dtype=DTYPES[dtype_name]).element_size()
    bpe = bytes_per_event(plan, ir, rows, elem)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "torch": torch.__version__, "spec": "slices/reels.slice", "plan": plan.summary(),
        "users": args.users, "events": n_events, "dim": dim, "dtype": dtype_name,
        "fused": {
            "median_s": t_kernel, "events_per_s": n_events / t_kernel,
            "users_per_s": args.users / t_kernel,
            "baseline_median_s": t_base, "baseline_events_per_s": n_events / t_base,
            "speedup": t_base / t_kernel, "counts_equal": counts_equal,
            "max_abs_err_vs_baseline": max_err,
            "rows_per_event": rows, "roofline_bytes_per_event": bpe,
            "achieved_GB_per_s": bpe * n_events / t_kernel / 1e9,
            "phases_s": phases,
        },
    }
    if not args.skip_jagged:
        ju = args.jagged_users or args.users
        jusers, jtimes = users[:ju], times[:ju]
        jbase = base if ju == args.users else TorchBaseline(ir, store, jusers, jtimes, device)
        limits = row_limits(ir)
        t_j, jag = timed(lambda: validate(run.jagged(prepare(ir, store, jusers, jtimes)),
                                          limits), args.repeats, device)
        t_jb, (lengths, values, weights) = timed(jbase.jagged, args.baseline_repeats, device)
        jphases: dict[str, float] = {}
        if device == "cuda":
            launcher(device, tuning, jphases).jagged(prepare(ir, store, jusers, jtimes))
            jphases["validate"], _ = timed(lambda: validate(jag, limits), args.repeats, device)
        result["jagged"] = {
            "users": int(ju), "events": jbase.n_events,
            "median_s": t_j, "events_per_s": jbase.n_events / t_j,
            "baseline_median_s": t_jb, "speedup": t_jb / t_j, "phases_s": jphases,
            "values": int(values.numel()),
            "lengths_equal": bool(torch.equal(jag.lengths.cpu(), lengths.cpu())),
            "values_equal": bool(torch.equal(jag.values.cpu(), values.cpu())),
            "max_weight_err": float((jag.weights.cpu() - weights.cpu()).abs().max())
            if values.numel() else 0.0,
        }
    return result


if __name__ == "__main__":
    main()
