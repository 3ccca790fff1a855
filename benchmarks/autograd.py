"""The two training paths of the slice tables, forward + backward on the same batch.

Run: ``python -m benchmarks autograd [--device cpu|cuda] [--users N[,N...]] [--events-per-user E]
[--spec slices/reels.slice] [--dims 64] [--rows spec|paper] [--out FILE]``.

* **fused**: :func:`dv365.kernels.autograd.fused_pool` -- the fused kernel's pooled output,
  the jagged kernel's rows kept for the backward, which scatter-adds ``bag_weight * grad``
  into dense table gradients;
* **jagged + EBC**: :func:`dv365.kernels.jagged.slice_jagged` -> ``KeyedJaggedTensor`` ->
  torchrec's ``EmbeddingBagCollection`` as :class:`dv365.model.tables.SliceTables` builds it
  for training (weighted SUM pooling; dense gradients under ``--sparse-min-rows`` rows, sparse
  ones from there, the trainer's default).

Data: the synthetic store of ``benchmarks/kernels.py`` (``--events-per-user`` events per
user over a year, request time an hour after the last event). Tables: the spec's, at each
``--dims`` width, with the spec's row counts (what ``dv365 train`` builds) or the paper
profile's (``--rows paper``). Loss: ``sum(pooled * G)`` for a fixed random ``G``.

Before timing, both paths are checked against each other on the batch: counts equal, pooled
vectors and every table's gradient equal within float32's summation error bound for each
element (see ``TrainingPaths.check``; the run stops with exit code 1 otherwise). Then, medians of ``--repeats`` runs after one warm-up
(which compiles), synchronized on CUDA, in the same process: the jagged step alone, jagged +
EBC forward, jagged + EBC forward + backward, the fused kernel alone, the fused op forward,
and fused forward + backward. ``--device cuda`` runs the CUDA kernels (in Numba's simulator
when ``NUMBA_ENABLE_CUDASIM=1``, on CPU tensors: slow, for checking that the path runs).
Prints one JSON document (and writes it with ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._timing import median_seconds  # noqa: E402
from benchmarks.kernels import request_times, resized, synthetic_store  # noqa: E402
from dv365.slices import ir as I  # noqa: E402


def spec_ir(spec: Path, dim: int, rows: str) -> I.SpecIR:
    """The spec compiled, its tables at width ``dim`` (and the paper's rows if asked)."""
    from dv365.slices.compile import compile_spec

    return resized(compile_spec(spec), dim, paper_rows=rows == "paper")


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def torch_device(device: str) -> torch.device:
    """Where the tables live: CPU, the GPU, or CPU again under Numba's CUDA simulator."""
    if device == "cpu":
        return torch.device("cpu")
    from dv365.kernels import cuda_launch

    if not cuda_launch.available():
        sys.exit("error: --device cuda needs an NVIDIA GPU (or NUMBA_ENABLE_CUDASIM=1)")
    return cuda_launch.torch_device()


class TrainingPaths:
    """Both paths over one batch, with the same initial tables and upstream gradient."""

    def __init__(self, ir: I.SpecIR, store, users: np.ndarray, times: np.ndarray,
                 backend: str, dev: torch.device, sparse_min_rows: int, seed: int = 0):
        from dv365.model.tables import SliceTables

        self.ir, self.store, self.users, self.times = ir, store, users, times
        self.backend, self.dev = backend, dev
        g = torch.Generator().manual_seed(seed)
        init = {t.name: (torch.rand((t.num_rows, t.dim), generator=g) * 2 - 1)
                for t in ir.tables}
        self.params = [init[t.name].to(dev).requires_grad_(True) for t in ir.tables]
        self.tables = SliceTables(ir, sparse_min_rows=sparse_min_rows, device=dev)
        with torch.no_grad():
            for name, bag in self.tables.ebc.embedding_bags.items():
                bag.weight.copy_(init[name])
        shape = (len(users), len(ir.slices), ir.dim)
        self.upstream = torch.randn(shape, generator=g).to(dev)

    def sync(self) -> None:
        if self.dev.type == "cuda":
            torch.cuda.synchronize()

    # ------------------------------------------------------------------ jagged + EBC
    def jagged(self):
        from dv365.kernels.jagged import slice_jagged

        return slice_jagged(self.ir, self.store, self.users, self.times, self.backend)

    def ebc_forward(self) -> torch.Tensor:
        return self.tables(self.jagged().kjt.to(self.dev))

    def ebc_step(self) -> torch.Tensor:
        self.tables.zero_grad(set_to_none=True)
        pooled = self.ebc_forward()
        (pooled * self.upstream).sum().backward()
        return pooled

    def ebc_grads(self) -> dict[str, torch.Tensor]:
        out = {}
        for name, bag in self.tables.ebc.embedding_bags.items():
            grad = bag.weight.grad
            out[name] = grad.to_dense() if grad.is_sparse else grad
        return out

    # ------------------------------------------------------------------ fused
    def fused_kernel(self):
        from dv365.kernels.fused import pool_fused

        named = {t.name: p.detach() for t, p in zip(self.ir.tables, self.params)}
        return pool_fused(self.ir, self.store, self.users, self.times, named, self.backend)

    def fused_forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        from dv365.kernels.autograd import fused_pool

        return fused_pool(self.ir, self.store, self.users, self.times, self.params,
                          self.backend)

    def fused_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        for p in self.params:
            p.grad = None
        pooled, counts = self.fused_forward()
        (pooled * self.upstream).sum().backward()
        return pooled, counts

    # ------------------------------------------------------------------ check, time
    def magnitudes(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Sums of absolute terms: pooled from ``|tables|``, gradients from ``|G|``.

        Every bag weight is positive, so the fused op over absolute values gives, per output
        element, the sum of the absolute values of the terms the paths add up: the scale of
        float32 rounding that two summation orders may differ by (a plain relative error
        misleads where terms of both signs cancel).
        """
        from dv365.kernels.autograd import fused_pool

        params = [p.detach().abs().requires_grad_(True) for p in self.params]
        pooled, _ = fused_pool(self.ir, self.store, self.users, self.times, params,
                               self.backend)
        (pooled * self.upstream.abs()).sum().backward()
        return pooled.detach(), [p.grad for p in params]

    def term_counts(self, jag) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Terms per output: bag lengths ``[B, S]`` and, per table, lookups of each row."""
        B, S = len(self.users), len(self.ir.slices)
        lengths = jag.lengths.to(self.dev)
        slice_of_value = torch.repeat_interleave(torch.arange(S * B, device=self.dev),
                                                 lengths) // B
        names = [t.name for t in self.ir.tables]
        table_of_slice = torch.tensor([names.index(s.table) for s in self.ir.slices],
                                      device=self.dev)
        table_of_value = table_of_slice[slice_of_value]
        values = jag.values.to(self.dev)
        hits = [torch.bincount(values[table_of_value == i], minlength=t.num_rows)
                for i, t in enumerate(self.ir.tables)]
        return jag.counts.to(self.dev), hits

    def check(self) -> dict:
        """Both paths on the batch: counts, pooled vectors and table gradients compared.

        Float32 sums of ``n`` terms in any order are within ``(n - 1) u sum|x|`` of the exact
        sum (``u = 2^-24``); two paths, each also rounding a weight and a product per term,
        may differ by ``2 (n + 4) u sum|x|`` per output element, with ``n`` its own number of
        terms. An error here is the largest difference over that bound (ok: at most 1), so a
        single wrong row or weight among few terms shows, and long sums are not flagged.
        """
        jag = self.jagged()
        pooled_f, counts = self.fused_step()
        pooled_e = self.ebc_step()
        self.sync()
        grads_e = self.ebc_grads()
        pooled_abs, grads_abs = self.magnitudes()
        bag_terms, row_terms = self.term_counts(jag)
        u = 2.0 ** -24

        def err(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor,
                terms: torch.Tensor) -> float:
            if not a.numel():
                return 0.0
            diff = (a.detach().double() - b.detach().double()).abs()
            bound = 2 * (terms.double() + 4) * u * scale.double() + 1e-30
            return float((diff / bound).max())

        grad_errs = {}
        for t, p, scale, hits in zip(self.ir.tables, self.params, grads_abs, row_terms):
            other = grads_e.get(t.name, torch.zeros_like(p))
            grad_errs[t.name] = err(p.grad, other, scale, hits[:, None])
        result = {
            "counts_equal": bool(torch.equal(counts.cpu(), jag.counts.cpu())),
            "pooled_err": err(pooled_f, pooled_e, pooled_abs, bag_terms[:, :, None]),
            "grad_err_max": max(grad_errs.values()),
            "grad_err_by_table": grad_errs,
            "values": int(jag.lengths.sum()),
            "longest_bag": int(bag_terms.max()) if bag_terms.numel() else 0,
            "most_row_lookups": max(int(h.max()) for h in row_terms),
            "touched_rows": int(sum(int((h > 0).sum()) for h in row_terms)),
        }
        result["ok"] = (result["counts_equal"] and result["pooled_err"] <= 1
                        and result["grad_err_max"] <= 1)
        return result

    def median(self, fn, repeats: int) -> float:
        def run() -> None:
            fn()
            self.sync()

        run()  # warm-up: compiles kernels, fills allocator caches
        return median_seconds(run, repeats)


def measure(args, dim: int, store, users, times, dev: torch.device) -> dict:
    ir = spec_ir(args.spec, dim, args.rows)
    backend = "cuda" if args.device == "cuda" else "cpu"
    paths = TrainingPaths(ir, store, users, times, backend, dev, args.sparse_min_rows)
    check = paths.check()
    n_events = int(np.sum(store.offsets[users + 1] - store.offsets[users]))
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "device": (torch.cuda.get_device_name() if dev.type == "cuda" else
                   "cpu (CUDA simulator)" if backend == "cuda" else "cpu"),
        "torch": torch.__version__, "spec": _shown(args.spec), "slices": len(ir.slices),
        "tables": len(ir.tables), "rows": args.rows,
        "table_rows": sum(t.num_rows for t in ir.tables), "dim": dim,
        "sparse_grad_tables": sum(bag.sparse for bag in
                                  paths.tables.ebc.embedding_bags.values()),
        "users": len(users), "events": n_events, "check": check,
    }
    if not check["ok"]:
        return result
    r = args.repeats
    t = {
        "jagged": paths.median(paths.jagged, r),
        "jagged_ebc_forward": paths.median(paths.ebc_forward, r),
        "jagged_ebc_train": paths.median(paths.ebc_step, r),
        "fused_kernel": paths.median(paths.fused_kernel, r),
        "fused_forward": paths.median(paths.fused_forward, r),
        "fused_train": paths.median(paths.fused_step, r),
    }
    result["median_s"] = t
    result["train_events_per_s"] = {"jagged_ebc": n_events / t["jagged_ebc_train"],
                                    "fused": n_events / t["fused_train"]}
    result["fused_speedup_train"] = t["jagged_ebc_train"] / t["fused_train"]
    result["faster_train_path"] = ("fused" if t["fused_train"] < t["jagged_ebc_train"]
                                   else "jagged_ebc")
    result["backward_s"] = {"jagged_ebc": t["jagged_ebc_train"] - t["jagged_ebc_forward"],
                            "fused": t["fused_train"] - t["fused_forward"]}
    return result


def summary(r: dict) -> str:
    """One line per measurement (progress in logs)."""
    head = f"{r['users']} users x {r['events'] // max(r['users'], 1):,} events, D={r['dim']}: "
    c = r["check"]
    if not c["ok"]:
        return head + f"CHECK FAILED {json.dumps(c)}"
    t = r["median_s"]
    return head + (f"jagged {t['jagged'] * 1e3:.1f} ms, jagged+EBC fwd+bwd "
                   f"{t['jagged_ebc_train'] * 1e3:.1f} ms, fused fwd+bwd "
                   f"{t['fused_train'] * 1e3:.1f} ms ({r['fused_speedup_train']:.2f}x); "
                   f"pooled err {c['pooled_err']:.2f}, grad err {c['grad_err_max']:.2f} "
                   f"of the float32 bound")


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--users", default="4",
                    help="comma-separated batch sizes, measured in this order in one process")
    ap.add_argument("--events-per-user", type=int, default=40_000)
    ap.add_argument("--spec", type=Path, default=ROOT / "slices" / "reels.slice")
    ap.add_argument("--dims", default="64", help="comma-separated table widths")
    ap.add_argument("--rows", choices=["spec", "paper"], default="spec",
                    help="table rows: the spec's (as dv365 train) or the paper profile's")
    ap.add_argument("--sparse-min-rows", type=int, default=1 << 20,
                    help="EBC tables with at least this many rows get sparse gradients "
                         "(the trainer's default)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)

    dev = torch_device(args.device)
    sizes = [int(n) for n in args.users.split(",")]
    store = synthetic_store(max(sizes), args.events_per_user)
    all_times = request_times(store)
    results = []
    for n in sizes:
        users, times = np.arange(n, dtype=np.int64), all_times[:n]
        for dim in (int(d) for d in args.dims.split(",")):
            result = measure(args, dim, store, users, times, dev)
            results.append(result)
            print(summary(result), file=sys.stderr, flush=True)
            if args.out:  # after each size, so that a run stopped by a time limit keeps them
                args.out.write_text(json.dumps(results, indent=2))
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    print(json.dumps(results, indent=2))
    if not all(r["check"]["ok"] for r in results):
        print("error: the two paths disagree (see check above)", file=sys.stderr)
        sys.exit(1)
    return results


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
