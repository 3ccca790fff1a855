#!/usr/bin/env bash
# The main job end to end on the embedded default data (called by `make demo`): generate long
# histories, check and summarize them, compile the slice specs, look at one user through them,
# train the foundation model with the 24h gap, show the plugins it was built from, export
# every user's embedding 4-bit to the embedded store, read one back, and measure downstream
# whether the embedding helps a ranker that already sees the recent history; then run the
# recurring pipeline for two cycles as new days of events arrive.
set -euo pipefail
out=build/demo            # configs/demo.yaml reads and writes here
dv365() { .venv/bin/dv365 "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
mkdir -p "$out"

step "1. The default data: a year of long histories with planted interests (docs/data.md)"
dv365 synth "$out/data" --users 2000 --seed 0 --force

step "2. Check every row, then summarize what is there (docs/data-model.md)"
dv365 validate "$out/data"
dv365 inspect "$out/data"

step "3. Compile the production-like spec against the data's vocabulary (docs/slice-language.md)"
dv365 compile slices/reels.slice -o "$out/build" --data "$out/data" --force

step "4. What the demo spec selects for one real user, before the 24h gap"
dv365 explain slices/minimal.slice --data "$out/data" --user 7

step "5. Train the FSA user tower inside the DLRM backbone (docs/model.md)"
rm -rf "$out/runs"
dv365 train configs/demo.yaml

step "6. The encoders, backbones, metrics, codecs, stores and adapters it was built from (docs/plugins.md)"
dv365 plugins

step "7. Export every user's embedding at the data's end, 4-bit, to the embedded store (docs/export.md)"
dv365 export --checkpoint "$out/runs/fsa/checkpoints/best.pt" --data "$out/data" --at end \
    --to "lmdb://$out/store" --codec int4

step "8. What the store serves for one user, and the snapshots it holds (docs/stores.md)"
dv365 lookup "lmdb://$out/store" 7
dv365 store gc "lmdb://$out/store" --keep 3
dv365 store versions "lmdb://$out/store"

step "9. Does it help downstream? HSTU control vs control + DV365 after a snapshot at T, then the paper's experiments, small (docs/downstream.md, docs/experiments.md)"
rm -rf "$out/eval"
dv365 eval configs/eval-demo.yaml

step "10. The recurring pipeline: a new day arrives, a cycle; another day, an incremental cycle (docs/pipeline.md)"
rm -rf "$out/pipeline"
dv365 synth --extend "$out/data" --days 1
dv365 pipeline run configs/pipeline-demo.yaml
dv365 synth --extend "$out/data" --days 1
dv365 pipeline run configs/pipeline-demo.yaml
dv365 pipeline status configs/pipeline-demo.yaml --last 2

step "11. The report of step 9: every table and plot in one self-contained page (docs/report.md)"
dv365 report "$out/eval" -o "$out/report.html"
