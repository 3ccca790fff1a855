#!/usr/bin/env bash
# The main job end to end on the embedded default data (called by `make demo`).
set -euo pipefail
out=${1:-build/demo}
dv365() { .venv/bin/dv365 "$@"; }
mkdir -p "$out"
# The default data: a year of long histories with planted interests (docs/data.md).
dv365 synth "$out/data" --users 2000 --seed 0 --force
