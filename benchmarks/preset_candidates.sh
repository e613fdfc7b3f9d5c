#!/usr/bin/env bash
# Short real-data runs of the mid-size preset candidates (issue 13), same budget of iterations each:
# ITERS steps of batch 16 at 320x320, bf16 (and one fp32 run of the chosen preset), the same hold-out
# as the default model (scripts/split_holdout.py, seed 0). Prints each run's hold-out mAP@0.5 at
# single scale. Usage: benchmarks/preset_candidates.sh [OUT] [ITERS]   (default runs/candidates 300)
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
run w50-bf16 benchmarks/presets/cand_w50.yaml bf16
run mid-fp32 mid fp32
