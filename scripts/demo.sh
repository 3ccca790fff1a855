#!/usr/bin/env bash
# The main job end to end on the embedded default data (called by `make demo`).
set -euo pipefail
out=${1:-build/demo}
dv365() { .venv/bin/dv365 "$@"; }
mkdir -p "$out"
