#!/usr/bin/env bash
# dv365 eval at the paper's history length on one GPU (device tool; results under $OUT):
# generate `dv365 synth --profile paper` data (USERS users, about 40,000 events each), then
# run `dv365 eval CONFIG` (default configs/eval-paper.yaml) with everything on the GPU, and
# write its tables and `dv365 report` page. EXPERIMENTS=a,b keeps only those experiments of
# the config (a device call is limited in time: the suite runs as several calls, each with
# its own control). Needs .whl/ carried (pydantic stack, lark, torchrec 1.6.1,
# fbgemm-gpu-cpu 1.6.0, tensordict, pyvers, iopath, lmdb).
# Usage: USERS=2000 EXAMPLES=320 LIMIT=550 [CONFIG=...] [EXPERIMENTS=...] bash scripts/eval_gpu.sh
set -o pipefail
export PYTHONUNBUFFERED=1 DV365_CACHE_DIR=${DV365_CACHE_DIR:-/tmp/dv365cache}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
USERS=${USERS:-2000}
CONFIG=${CONFIG:-configs/eval-paper.yaml}
DATA=build/paper-$USERS
NAME=$(basename "$CONFIG" .yaml)-$USERS${EXPERIMENTS:+-${EXPERIMENTS//,/-}}
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
python3 - "$CONFIG" "build/$NAME.yaml" "../$DATA" "../build/$NAME" "${EXPERIMENTS:-}" <<'PY'
import sys, yaml
source, target, data, out, keep = sys.argv[1:]
raw = yaml.safe_load(open(source))
raw.update(data=data, out=out)
if keep:
    raw["experiments"] = [e for e in raw.get("experiments", []) if e["type"] in keep.split(",")]
    if "backbone" not in keep.split(","):
        raw["retrieval"] = None  # only the backbone experiment is judged on retrieval
yaml.safe_dump(raw, open(target, "w"), sort_keys=False)
PY
timeout "${LIMIT:-560}" bash -c "$(declare -f dv365); dv365 eval build/$NAME.yaml" \
  > "$OUT/eval.log" 2>&1
echo "eval exit $?" | tee -a "$OUT/env.log"
# A time limit stops the runs, not the tables: write those of what finished.
dv365 eval "build/$NAME.yaml" --tables-only > "$OUT/tables.log" 2>&1
tail -60 "$OUT/tables.log"
for f in results.json results.md; do cp "build/$NAME/$f" "$OUT/" 2>/dev/null; done
dv365 report "build/$NAME" -o "$OUT/report.html" 2>&1 | tail -2
exit 0
