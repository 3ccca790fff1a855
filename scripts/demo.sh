#!/usr/bin/env bash
# The main job end to end on the embedded default data (called by `make demo`).
set -euo pipefail
out=${1:-build/demo}
dv365() { .venv/bin/dv365 "$@"; }
mkdir -p "$out"
# The default data: a year of long histories with planted interests (docs/data.md).
dv365 synth "$out/data" --users 2000 --seed 0 --force
# Check every row, then summarize what is there (docs/data-model.md).
dv365 validate "$out/data"
dv365 inspect "$out/data"
# The production-like slice spec, checked against the data's vocabulary (docs/slice-language.md).
dv365 compile slices/reels.slice -o "$out/build" --data "$out/data" --force
