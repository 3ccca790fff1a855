#!/usr/bin/env bash
# The slice kernels' GPU test run and benchmarks on the H200 (device tool; $OUT collects).
# Usage: bash benchmarks/kernels_gpu.sh [tests|bench|all]
set -o pipefail
what=${1:-all}
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:. DV365_CACHE_DIR=/tmp/dv365cache
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, numba, numpy; print('torch', torch.__version__, 'numba', numba.__version__, 'numpy', numpy.__version__)"
if [ "$what" = tests ] || [ "$what" = all ]; then
  # faulthandler_timeout: a test running past 90 s prints every thread's Python stack, so a
  # hung GPU test says where it waits.
  DV365_REAL_GPU=1 DV365_KERNEL_EXAMPLES=${DV365_KERNEL_EXAMPLES:-2} timeout ${TEST_TIMEOUT:-240} \
    python3 -m pytest -m gpu tests/kernels -v -p no:cacheprovider -x -o faulthandler_timeout=90 \
    2>&1 | tee "$OUT/gpu_tests.log" | grep -E "PASSED|FAILED|ERROR|passed|failed|^E " | tail -25
fi
if [ "$what" = bench ] || [ "$what" = all ]; then
  python3 benchmarks/kernels.py --device cuda --users 1024 --jagged-users 128 --dims 64,256 \
    --dtypes float32,bfloat16 --baseline-repeats 2 --out "$OUT/cuda_bench.json" \
    | grep -vE '"(date|device|torch|spec|plan|users)"'
fi
