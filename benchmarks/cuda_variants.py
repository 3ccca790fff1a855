"""Variants of the generated CUDA fused kernel, measured in one process (H200 tuning).

``python benchmarks/cuda_variants.py --users 1024 --variants default,plain --out F.json``
runs ``benchmarks/kernels.py``'s measurement (fused output against the PyTorch baseline,
phases) once per variant of :mod:`dv365.kernels.cuda_source`'s switches, regenerating and
recompiling the kernels between variants. Each variant is ``name`` or ``name@DIM/DTYPE``.
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

VARIANTS = {
    # the defaults: the entries kernel, at least 4 slot groups, blocks of up to 256 dims, 4
    # entries' rows loaded ahead, 128 entries staged, counts in mark_entries
    "default": {"CUDA_FUSED_DESIGN": "entries", "CUDA_ENTRY_PREFETCH": 4,
                "CUDA_ENTRY_CAP": 128, "CUDA_ENTRY_TILE": 128, "CUDA_CARVEOUT": "MaxShared",
                "CUDA_ENTRY_COUNTS": True, "CUDA_ENTRY_GROUPS": 4, "CUDA_ENTRY_OFFSET32": True,
                "CUDA_ENTRY_GROUP_BYTES": 10_000, "CUDA_ENTRY_DIMS_PER_BLOCK": 256,
                "CUDA_ENTRY_COUNTING": "mark", "CUDA_MARK_THREADS": 128,
                "CUDA_ENTRY_WALKERS": 1, "CUDA_MARK_MAX_REGISTERS": 64,
                "CUDA_MARK_EVENTS_PER_THREAD": 4,
                "PIPELINE": True, "CUDA_SLOTS_PER_KERNEL": 24, "CUDA_MAX_REGISTERS": 0,
                "CUDA_DIMS_PER_THREAD": 2, "CUDA_DIMS_PER_BLOCK": 64,
                "CUDA_FUSED_COUNTS": False, "CUDA_EVENTS_PER_STEP": 1},
    "entries_g1": {"CUDA_ENTRY_GROUPS": 1},  # every slot's sums in one block
    "entries_g3": {"CUDA_ENTRY_GROUPS": 3},
    "entries_g2": {"CUDA_ENTRY_GROUPS": 2},
    "entries_g6": {"CUDA_ENTRY_GROUPS": 6},
    "entries_g8": {"CUDA_ENTRY_GROUPS": 8},
    "entries_p2": {"CUDA_ENTRY_PREFETCH": 2},
    "entries_p8": {"CUDA_ENTRY_PREFETCH": 8},
    "entries_cap1024": {"CUDA_ENTRY_CAP": 1024},
    # at D = 256: blocks of 128 or 64 dims (2 or 4 blocks walk the same entries)
    "entries_d128": {"CUDA_ENTRY_DIMS_PER_BLOCK": 128},
    "entries_d64": {"CUDA_ENTRY_DIMS_PER_BLOCK": 64},
    # measures counting (counts wrong)
    "entries_nocounts": {"CUDA_ENTRY_COUNTS": False, "CUDA_ENTRY_COUNTING": "slot_loop"},
    "entries_l1": {"CUDA_CARVEOUT": ""},  # the driver's shared/L1 split
    "entries_off64": {"CUDA_ENTRY_OFFSET32": False},  # 64-bit row offsets
    # where the entries design counts (the default: in mark_entries)
    "slot_loop": {"CUDA_ENTRY_COUNTING": "slot_loop"},  # thread 0 in the slot loop
    "lanes": {"CUDA_ENTRY_COUNTING": "lanes"},  # lane l counts an entry's slot bit l
    "mark_regs0": {"CUDA_MARK_MAX_REGISTERS": 0},  # ptxas's 80 registers
    "mark_ept1": {"CUDA_MARK_EVENTS_PER_THREAD": 1},  # a counting block per 128 events
    "cap256": {"CUDA_ENTRY_CAP": 256},  # 256 staged entries: 7.9 kB a block at D=64
    # two walkers per warp (each step one entry of each of two groups; D=64: 4 dims a lane)
    "w2": {"CUDA_ENTRY_WALKERS": 2, "CUDA_ENTRY_COUNTING": "slot_loop"},
    "w2_mark": {"CUDA_ENTRY_WALKERS": 2},
    "w2_g8": {"CUDA_ENTRY_WALKERS": 2, "CUDA_ENTRY_GROUPS": 8,
              "CUDA_ENTRY_COUNTING": "slot_loop"},
    "w2_g8_mark": {"CUDA_ENTRY_WALKERS": 2, "CUDA_ENTRY_GROUPS": 8},
    # the dense design (every slot of a table group tested per event, register sums) and
    # its variants
    "dense": {"CUDA_FUSED_DESIGN": "dense"},
    "dense_l1": {"CUDA_FUSED_DESIGN": "dense", "CUDA_CARVEOUT": ""},
    # counts in the fused kernels, no tally
    "fused_counts": {"CUDA_FUSED_DESIGN": "dense", "CUDA_FUSED_COUNTS": True},
    # 2 or 4 events' table loads in flight per warp
    "events2": {"CUDA_FUSED_DESIGN": "dense", "CUDA_EVENTS_PER_STEP": 2},
    "events4": {"CUDA_FUSED_DESIGN": "dense", "CUDA_EVENTS_PER_STEP": 4},
    "v1": {"CUDA_FUSED_DESIGN": "dense", "CUDA_DIMS_PER_THREAD": 1},  # a thread per dim
    "slots16": {"CUDA_FUSED_DESIGN": "dense", "CUDA_SLOTS_PER_KERNEL": 16},
    # 128 dims per block, 4 per thread: fewer blocks repeat the event walk at D = 256
    "wide": {"CUDA_FUSED_DESIGN": "dense", "CUDA_DIMS_PER_BLOCK": 128,
             "CUDA_DIMS_PER_THREAD": 4, "CUDA_SLOTS_PER_KERNEL": 12},
    # each event's loads right before its adds
    "plain": {"CUDA_FUSED_DESIGN": "dense", "PIPELINE": False},
    "one_kernel": {"CUDA_FUSED_DESIGN": "dense", "CUDA_SLOTS_PER_KERNEL": 1000},
    "slots12": {"CUDA_FUSED_DESIGN": "dense", "CUDA_SLOTS_PER_KERNEL": 12},
    "slots40": {"CUDA_FUSED_DESIGN": "dense", "CUDA_SLOTS_PER_KERNEL": 40},
    "regs96": {"CUDA_FUSED_DESIGN": "dense", "CUDA_MAX_REGISTERS": 96},
    "regs64": {"CUDA_FUSED_DESIGN": "dense", "CUDA_MAX_REGISTERS": 64},
}


def kernel_facts(dim: int) -> dict:
    """Registers, shared memory and resident blocks per SM (the driver's occupancy
    calculator) of each compiled fused kernel."""
    from numba import cuda

    from dv365.kernels import codegen, cuda_source

    sms = cuda.get_current_device().MULTIPROCESSOR_COUNT
    threads = cuda_source.fused_threads(dim)
    facts = {}
    for module in codegen._MODULES.values():
        for name in dir(module):
            if not name.startswith("fused") or not hasattr(getattr(module, name), "overloads"):
                continue
            for kernel in getattr(module, name).overloads.values():
                facts[name] = {"regs": kernel.regs_per_thread,
                               "smem": kernel.shared_mem_per_block,
                               "blocks_per_sm": kernel.max_cooperative_grid_blocks(threads) / sms}
    return facts


def main(argv=None) -> list:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=1024)
    ap.add_argument("--events", type=int, default=40_000)
    ap.add_argument("--variants", default="default,plain")
    ap.add_argument("--jagged-users", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    from dv365.kernels import codegen, cuda_source

    store = synthetic_store(args.users, args.events)
    users = np.arange(args.users, dtype=np.int64)
    times = request_times(store)
    results, bases = [], {}
    jagged_done = False
    for spec in args.variants.split(","):
        name, _, shape = spec.partition("@")
        dim, dtype = (shape.split("/") if shape else ("64", "float32"))
        for key, value in {**VARIANTS["default"], **VARIANTS[name]}.items():
            setattr(cuda_source, key, value)
        codegen._MODULES.clear()
        ir = reels_ir(int(dim))
        if "base" not in bases:
            bases["base"] = TorchBaseline(ir, store, users, times, "cuda")
        base = bases["base"]
        base.ir = ir
        run_args = argparse.Namespace(device="cuda", users=args.users, repeats=args.repeats,
                                      baseline_repeats=2, skip_jagged=jagged_done,
                                      jagged_users=args.jagged_users)
        start = time.perf_counter()
        result = run_config(run_args, ir, store, users, times, base, int(dim), dtype)
        result["variant"] = spec
        result["wall_s_with_compile"] = time.perf_counter() - start
        jagged_done = True
        try:
            result["kernels"] = kernel_facts(int(dim))
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
