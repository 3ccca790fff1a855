"""Variants of the generated CUDA fused kernel, measured in one process (H200 tuning).

``python benchmarks/cuda_variants.py --users 1024 --variants default,plain --out F.json``
runs ``benchmarks/kernels.py``'s measurement (fused output against the PyTorch baseline,
phases) once per variant: a :class:`~dv365.kernels.cuda_tuning.CudaTuning` (each compiles
its own kernels; the tuning is part of their cache key). Each variant is ``name`` or
``name@DIM/DTYPE``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.kernels import (  # noqa: E402
    TorchBaseline, reels_ir, request_times, run_config, synthetic_store)

# Each variant is a CudaTuning: the defaults, and single changes measured against them.
VARIANTS: dict[str, dict] = {
    "default": {},
    "groups1": {"min_entry_groups": 1},  # every slot's sums in one block
    "groups2": {"min_entry_groups": 2},
    "groups3": {"min_entry_groups": 3},
    "groups6": {"min_entry_groups": 6},
    "groups8": {"min_entry_groups": 8},
    "prefetch2": {"prefetch_entries": 2},
    "prefetch8": {"prefetch_entries": 8},
    "staged256": {"staged_entries": 256},
    "staged1024": {"staged_entries": 1024},
    # at D = 256: blocks of 128 or 64 dims (2 or 4 blocks walk the same entries)
    "dims128": {"max_dims_per_block": 128},
    "dims64": {"max_dims_per_block": 64},
    "carveout_driver": {"shared_carveout": ""},  # the driver's shared/L1 split
    "offsets64": {"offset32": False},  # 64-bit row offsets
    "mark_regs_ptxas": {"mark_max_registers": 0},  # ptxas's register count
    "mark_events1": {"mark_events_per_thread": 1},  # a counting block per 128 events
    "tile256": {"tile_events": 256},
    "chunk4096": {"fused_chunk_events": 4096},
}


def kernel_facts(dim: int, tuning) -> dict:
    """Registers, shared memory and resident blocks per SM (the driver's occupancy
    calculator) of each compiled kernel of the modules built with ``tuning``."""
    from numba import cuda

    from dv365.kernels.cache import CACHES

    sms = cuda.get_current_device().MULTIPROCESSOR_COUNT
    facts = {}
    for tag, module in list(CACHES.modules._items.items()):
        if tuning.key() not in str(tag):
            continue
        for name in dir(module):
            kernel_fn = getattr(module, name)
            if not hasattr(kernel_fn, "overloads"):
                continue
            threads = tuning.mark_threads if name.startswith("mark") else 32
            for kernel in kernel_fn.overloads.values():
                facts[name] = {"regs": kernel.regs_per_thread,
                               "smem": kernel.shared_mem_per_block,
                               "blocks_per_sm": kernel.max_cooperative_grid_blocks(threads) / sms}
    return facts


def main(argv=None) -> list:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=1024)
    ap.add_argument("--events", type=int, default=40_000)
    ap.add_argument("--variants", default="default,groups3")
    ap.add_argument("--jagged-users", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    from dv365.kernels.cuda_tuning import CudaTuning

    store = synthetic_store(args.users, args.events)
    users = np.arange(args.users, dtype=np.int64)
    times = request_times(store)
    results, bases = [], {}
    jagged_done = False
    for spec in args.variants.split(","):
        name, _, shape = spec.partition("@")
        dim, dtype = (shape.split("/") if shape else ("64", "float32"))
        tuning = CudaTuning(**VARIANTS[name])
        ir = reels_ir(int(dim))
        if "base" not in bases:
            bases["base"] = TorchBaseline(ir, store, users, times, "cuda")
        base = bases["base"]
        base.ir = ir
        run_args = argparse.Namespace(device="cuda", users=args.users, repeats=args.repeats,
                                      baseline_repeats=2, skip_jagged=jagged_done,
                                      jagged_users=args.jagged_users)
        start = time.perf_counter()
        result = run_config(run_args, ir, store, users, times, base, int(dim), dtype, tuning)
        result["variant"] = spec
        result["wall_s_with_compile"] = time.perf_counter() - start
        jagged_done = True
        try:
            result["kernels"] = kernel_facts(int(dim), tuning)
        except Exception as exc:  # facts are extra: never lose a measurement to them
            result["kernels"] = {"error": repr(exc)}
        results.append(result)
        f = result["fused"]
        print(f"{spec}: fused {f['median_s'] * 1e3:.1f} ms, {f['speedup']:.1f}x baseline, "
              f"{f['achieved_GB_per_s']:.0f} GB/s, phases "
              + ", ".join(f"{k} {v * 1e3:.1f}" for k, v in f["phases_s"].items())
              + f", counts equal {f['counts_equal']}, err {f['max_abs_err_vs_baseline']:.1e}"
              + (f"; jagged {result['jagged']['median_s'] * 1e3:.1f} ms "
                 f"{result['jagged']['speedup']:.1f}x equal "
                 f"{result['jagged']['values_equal']}, phases "
                 + ", ".join(f"{k} {v * 1e3:.1f}"
                             for k, v in result["jagged"]["phases_s"].items())
                 if "jagged" in result else ""),
              flush=True)
        print("  kernels:", result["kernels"], flush=True)
        if args.out:
            args.out.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
