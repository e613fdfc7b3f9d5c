#!/usr/bin/env bash
# Reproduces the embedded default model acfd/weights/acfd_tiny_icartoonface.pt (interim, issue 9):
# `tiny` trained on CPU for 8 epochs on the iCartoonFace subset in ../shared/data/icartoonface_train,
# minus a fixed 10% hold-out (scripts/split_holdout.py, seed 0: the 230 images whose
# sha256("0:" + name) fraction is below 0.1), 320x320 inputs, batch 16, seed 0. About 28 minutes on
# 2 CPU cores. Then evaluates best.pt on the hold-out, single-scale and multi-scale.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${ACFD_REAL_DATA:-../shared/data/icartoonface_train}
RUN=${1:-runs/default-tiny}
mkdir -p "$RUN"
.venv/bin/python scripts/split_holdout.py "$DATA/icartoonface_dettrain.csv" "$RUN/split" --fraction 0.1 --seed 0
.venv/bin/acfd train --data "$RUN/split/train.csv" --val "$RUN/split/val.csv" --images "$DATA/images" \
    --preset tiny --epochs 8 --batch 16 --size 320 --seed 0 --workers 1 --threads 2 --eval-every 4 \
    --log-every 10 --no-progress --out "$RUN"
for mode in single multi; do
    flag=()
    [ "$mode" = multi ] && flag=(--multiscale)
    .venv/bin/acfd eval --weights "$RUN/best.pt" --data "$RUN/split/val.csv" --images "$DATA/images" \
        --no-progress "${flag[@]}" --json "$RUN/eval_$mode.json" --plot "$RUN/pr_$mode.png"
done
.venv/bin/python - "$RUN/best.pt" acfd/weights/acfd_tiny_icartoonface.pt <<'PY'
import sys, torch
from acfd.training.checkpoint import read_checkpoint, save_checkpoint
ckpt = read_checkpoint(sys.argv[1])
keep = {k: ckpt[k] for k in ("preset", "model", "epoch", "iteration") if k in ckpt}
save_checkpoint(sys.argv[2], keep)  # weights only: no optimizer state
print("wrote", sys.argv[2])
PY
