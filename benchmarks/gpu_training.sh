#!/usr/bin/env bash
# The GPU training path on the H200 (device tool; $OUT collects at most 7 files):
#   1. benchmarks/autograd.py: fused pooling op vs jagged + torchrec EBC, forward + backward,
#      checked against each other first (32 users to compile and check, then 256 x 40,000);
#   2. benchmarks/train.py --device cuda: training steps per second with either pooling path
#      (pooling: ebc and fused, interleaved), the CPU section's setup (1,000 users, 45 slices,
#      D=16) and a paper-like one (reels.slice, D=64, ~10k events per user).
# Every step runs under `timeout`; the whole script stays under ~6.5 minutes.
# Needs .whl/ carried (pydantic stack, lark, torchrec 1.6.1, fbgemm-gpu-cpu 1.6.0, tensordict,
# pyvers). Usage: bash benchmarks/gpu_training.sh [autograd|train|all]
# Locally (CPU, small sizes): DEVICE=cpu SMALL=1 OUT=/tmp/x bash benchmarks/gpu_training.sh
set -o pipefail
what=${1:-all}
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
  AG_USERS=1,2 AG_EVENTS=3000 AG_REPEATS=2
  TR_A="--users 100 --steps 2 --batch-size 32"
  TR_B="--users 60 --steps 2 --batch-size 32 --mean-events 500"
else
  AG_USERS=32,256 AG_EVENTS=40000 AG_REPEATS=5
  TR_A="--users 1000 --steps 15 --batch-size 256"
  TR_B="--users 1000 --steps 8 --batch-size 256 --mean-events 10000"
fi
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
  $PY -c "
import numpy as np
if not hasattr(np, 'row_stack'):
    np.row_stack = np.vstack  # numba-cuda imports it (gone in NumPy 2.5); dv365.kernels.gpu does the same
import torch, numba, numpy, torchrec, fbgemm_gpu, pydantic
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'numba', numba.__version__,
      'numpy', numpy.__version__, 'torchrec', torchrec.__version__, 'pydantic', pydantic.__version__)
import dv365.model.train, dv365.kernels.autograd
if torch.cuda.is_available():
    import dv365.kernels.gpu as gpu
    print('numba cuda available:', gpu.available(), 'simulator:', gpu.simulator())
"
} 2>&1 | tee "$OUT/env.log"

if [ "$what" = autograd ] || [ "$what" = all ]; then
  echo "== autograd: users $AG_USERS x $AG_EVENTS events, D=64, reels.slice"
  timeout -k 5 ${AUTOGRAD_TIMEOUT:-200} $PY -m benchmarks autograd --device "$DEVICE" \
    --users "$AG_USERS" --events-per-user "$AG_EVENTS" --dims 64 --repeats "$AG_REPEATS" \
    --out "$OUT/autograd_$DEVICE.json" > "$OUT/autograd_$DEVICE.log" 2>&1
  echo "exit $?"; grep -E "users x|error|Error|FAILED" "$OUT/autograd_$DEVICE.log" | tail -8
fi

if [ "$what" = train ] || [ "$what" = all ]; then
  echo "== train: paper-shaped spec (45 slices, D=16), generator's small profile"
  timeout -k 5 ${TRAIN_TIMEOUT:-75} $PY -m benchmarks train --device "$DEVICE" $TR_A \
    --pooling ebc fused \
    --out "$OUT/train_${DEVICE}_small.json" > "$OUT/train_${DEVICE}_small.log" 2>&1
  echo "exit $?"; tail -9 "$OUT/train_${DEVICE}_small.log"
  echo "== train: reels.slice (205 slices, D=64), ~10k events per user, dedup only"
  timeout -k 5 ${TRAIN_REELS_TIMEOUT:-100} $PY -m benchmarks train --device "$DEVICE" $TR_B \
    --spec slices/reels.slice --dim 64 --no-baseline --pooling ebc fused \
    --out "$OUT/train_${DEVICE}_reels.json" > "$OUT/train_${DEVICE}_reels.log" 2>&1
  echo "exit $?"; tail -9 "$OUT/train_${DEVICE}_reels.log"
fi
