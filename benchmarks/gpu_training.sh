#!/usr/bin/env bash
# The GPU training path on the H200 (device tool; $OUT collects 5 files):
#   1. benchmarks/autograd.py: fused pooling op vs jagged + torchrec EBC, forward + backward,
#      checked against each other first (32 users x 40,000 events, then 256 x 40,000, D=64);
#   2. benchmarks/train.py --device cuda, both pooling paths (ebc, fused) interleaved: a
#      paper-like setup (reels.slice, D=64, ~10k events per user), then the CPU section's
#      (1,000 users, 45 slices, D=16, small profile).
# All three run in one Python process: the generated CUDA kernels are compiled in-process
# (tens of seconds per spec and dtype), and the reels training reuses the autograd run's
# kernels (same plan). One `timeout` bounds the whole run; results are written after each
# step, so a run cut by the limit keeps what finished (its run time: docs/benchmarks.md).
# Needs .whl/ carried (pydantic stack, lark, torchrec 1.6.1, fbgemm-gpu-cpu 1.6.0, tensordict,
# pyvers, iopath 0.1.9: torchrec imports it). Usage: bash benchmarks/gpu_training.sh
# Locally (CPU, small sizes): DEVICE=cpu SMALL=1 OUT=/tmp/x PYTHON=.venv/bin/python bash ...
set -o pipefail
DEVICE=${DEVICE:-cuda}
export PYTHONUNBUFFERED=1 DV365_CACHE_DIR=${DV365_CACHE_DIR:-/tmp/dv365cache}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
PY=${PYTHON:-python3}
if [ -d .whl ] && [ "$DEVICE" = cuda ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:.
else
  export PYTHONPATH=.
fi
if [ -n "$SMALL" ]; then  # a quick local check of the script itself
  AG="--users 1,2 --events-per-user 3000 --repeats 2"
  TR_REELS="--users 60 --steps 2 --batch-size 32 --mean-events 500"
  TR_SMALL="--users 100 --steps 2 --batch-size 32"
else
  AG="--users 32,256 --events-per-user 40000 --repeats 5"
  TR_REELS="--users 1000 --steps 8 --batch-size 256 --mean-events 10000"
  TR_SMALL="--users 1000 --steps 15 --batch-size 256"
fi
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
  $PY -c "
import numpy as np
if not hasattr(np, 'row_stack'):
    np.row_stack = np.vstack  # numba-cuda imports it (gone in NumPy 2.5), as dv365.kernels.cuda_launch does
import torch, numba, numpy, torchrec, fbgemm_gpu, pydantic
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'numba', numba.__version__,
      'numpy', numpy.__version__, 'torchrec', torchrec.__version__, 'pydantic', pydantic.__version__)
import dv365.model.train, dv365.kernels.autograd
if torch.cuda.is_available():
    import dv365.kernels.cuda_launch as gpu
    print('numba cuda available:', gpu.available(), 'simulator:', gpu.simulator())
"
} 2>&1 | tee "$OUT/env.log"

D=$DEVICE
timeout -k 10 ${RUN_TIMEOUT:-370} $PY - <<EOF 2>&1 | tee "$OUT/run.log" | grep --line-buffered -vE '^\s*[]["{}]|^\s+"'
import sys, time, traceback
from benchmarks.__main__ import run

steps = [
    ("autograd", "--device $D --dims 64 $AG --out $OUT/autograd_$D.json"),
    ("train", "--device $D $TR_REELS --spec slices/reels.slice --dim 64 --no-baseline "
              "--pooling ebc fused --out $OUT/train_${D}_reels.json"),
    ("train", "--device $D $TR_SMALL --pooling ebc fused --out $OUT/train_${D}_small.json"),
]
worst = 0
for name, args in steps:
    print(f"== {name} {args}  ({time.strftime('%H:%M:%S')})", flush=True)
    start = time.perf_counter()
    try:
        code = run(name, args.split())
    except Exception:
        traceback.print_exc()
        code = 1
    print(f"== {name}: exit {code} after {time.perf_counter() - start:.0f} s", flush=True)
    worst = max(worst, code)
sys.exit(worst)
EOF
echo "exit ${PIPESTATUS[0]}"
