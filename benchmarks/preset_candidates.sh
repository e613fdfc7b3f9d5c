#!/usr/bin/env bash
# Short real-data runs of preset candidates (issue 13), same budget of iterations each: ITERS steps of
# batch 16 at 320x320 (multi-scale around it), bf16, and one fp32 run for the bf16-vs-fp32 check, on
# the same hold-out as the default model (scripts/split_holdout.py, seed 0). Then scores every run's
# final weights at 384x384 on the hold-out. Usage: benchmarks/preset_candidates.sh [OUT] [ITERS]
# (default runs/candidates 300). More candidates: add `run NAME PRESET PRECISION` lines.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${ACFD_REAL_DATA:-../shared/data/icartoonface_train}
OUT=${1:-runs/candidates}
ITERS=${2:-300}
mkdir -p "$OUT"
.venv/bin/python scripts/split_holdout.py "$DATA/icartoonface_dettrain.csv" "$OUT/split" --fraction 0.1 --seed 0
run() {  # name preset precision
    [ -f "$OUT/$1/last.pt" ] || .venv/bin/acfd train --data "$OUT/split/train.csv" --val "$OUT/split/val.csv" \
        --images "$DATA/images" --preset "$2" --precision "$3" --batch 16 --size 320 --epochs 100 \
        --max-iters "$ITERS" --warmup-iters 100 --lr-milestones 99 --eval-every 100 --workers 1 --threads 2 \
        --no-progress --out "$OUT/$1" > "$OUT/$1.log" 2>&1
    echo "$1 ($2, $3): $(tail -1 "$OUT/$1.log")"
}
run tiny-bf16 benchmarks/presets/cand_tiny.yaml bf16
run mid-bf16 mid bf16
run tiny-fp32 benchmarks/presets/cand_tiny.yaml fp32
# every candidate's final weights scored the same way (the training-time validation ran at each
# preset's own single scale)
for run in tiny-bf16 mid-bf16 tiny-fp32; do
    .venv/bin/acfd eval --weights "$OUT/$run/last.pt" --data "$OUT/split/val.csv" --images "$DATA/images" \
        --scales 384x384 --no-progress --json "$OUT/$run.eval.json" | tail -1 | sed "s/^/$run: /"
done
