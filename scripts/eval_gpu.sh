#!/usr/bin/env bash
# The downstream comparison at the paper's history length on one GPU (device tool; results
# under $OUT): generate `dv365 synth --profile paper` data (USERS users, 40,000 events each on
# average), then run `dv365 eval configs/eval-paper.yaml` with everything on the GPU. The
# evaluation is resumable, so a second call on the same machine continues where a time
# limit stopped the first. Needs .whl/ carried (pydantic stack, lark, torchrec 1.6.1,
# fbgemm-gpu-cpu 1.6.0, tensordict, pyvers, iopath, lmdb).
# Usage: USERS=2000 EXAMPLES=320 LIMIT=550 bash scripts/eval_gpu.sh
set -o pipefail
export PYTHONUNBUFFERED=1 DV365_CACHE_DIR=${DV365_CACHE_DIR:-/tmp/dv365cache}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
USERS=${USERS:-2000}
DATA=build/paper-$USERS
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:.
fi
dv365() { python3 -c "import sys; from dv365.cli.app import main; sys.exit(main())" "$@"; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/env.log"
[ -d "$DATA/events" ] || dv365 synth "$DATA" --profile paper --users "$USERS" --seed 0 \
  --examples-per-user "${EXAMPLES:-320}" 2>&1 | tail -1 | tee -a "$OUT/env.log"
# The config's paths are relative to its folder; build/ sits beside configs/.
sed -e "s#^data: .*#data: ../$DATA#" -e "s#^out: .*#out: ../build/eval-paper-$USERS#" \
  configs/eval-paper.yaml > "build/eval-paper-$USERS.yaml"
timeout "${LIMIT:-560}" bash -c "$(declare -f dv365); dv365 eval build/eval-paper-$USERS.yaml" \
  > "$OUT/eval.log" 2>&1
echo "eval exit $?" | tee -a "$OUT/env.log"
tail -40 "$OUT/eval.log"
# Everything the tables are made from (not the foundation's checkpoints or the store), as
# one archive, so they can be recomputed elsewhere: eval_tables.write_tables(folder).
(cd "build/eval-paper-$USERS" && tar czf "$OUT/eval.tgz" --exclude=foundation/checkpoints \
  --exclude=store .)
exit 0
