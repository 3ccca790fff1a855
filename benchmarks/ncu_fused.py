"""One fused pooling call on the GPU, to profile its kernels with Nsight Compute.

``ncu --kernel-name regex:fused --launch-skip 1 --launch-count 1 python3
benchmarks/ncu_fused.py --users 256`` (the first call compiles and is skipped; the second is
profiled). ``--variant`` picks a tuning of ``benchmarks/cuda_variants.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.kernels import (  # noqa: E402
    random_tables, reels_ir, request_times, synthetic_store)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=256)
    ap.add_argument("--events", type=int, default=40_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--variant", default="default")
    ap.add_argument("--calls", type=int, default=2)
    args = ap.parse_args(argv)
    from benchmarks.cuda_variants import VARIANTS
    from dv365.kernels.cuda_tuning import CudaTuning
    from dv365.kernels.fused import pool_fused

    tuning = CudaTuning(**VARIANTS[args.variant])
    store = synthetic_store(args.users, args.events)
    users = np.arange(args.users, dtype=np.int64)
    times = request_times(store)
    ir = reels_ir(args.dim)
    tables = random_tables(ir, torch.float32, "cuda")
    for _ in range(args.calls):
        pool_fused(ir, store, users, times, tables, "cuda", tuning=tuning)
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
