#!/usr/bin/env bash
# Reproduces the embedded default model acfd/weights/acfd_mid_cartoons.pt (issue 22): the `mid` preset
# fine-tuned from stage 1 (acfd/weights/acfd_mid_icartoonface.pt, scripts/train_icartoonface.sh) on four
# sources at once, each image drawn once per epoch (sampling weight 1):
#   - iCartoonFace: the subset in ../shared/data/icartoonface_train less its fixed 10% hold-out
#     (scripts/split_holdout.py, seed 0; 2,295 training images);
#   - Scooby-Doo, Dexter's Laboratory, Life with Louie: 3 x 4,000 training frames, built with
#     ../shared/data/tv_cartoons/build.py into $ACFD_TV_DATA (default ~/data/tv_cartoons); their 200
#     validation frames each are hold-outs, never trained on.
# The recipe (sampling weights, input size, LR) was chosen on short runs: benchmarks/RESULTS.md "Issue 22".
# Training runs in pieces: each call trains at most PIECE minutes (default 150), stopping at an epoch end
# (--pause-after), and the next call continues it exactly (--resume); when all EPOCHS are done it evaluates
# best.pt on every hold-out (three test scales; the error breakdown), takes the display threshold of best
# mean F1 over the hold-outs, and writes the weights-only checkpoint.
# Usage: scripts/train_default.sh [RUN_DIR] [EPOCHS] [PIECE_MINUTES]   (default runs/default-cartoons 7 150)
set -euo pipefail
cd "$(dirname "$0")/.."
ICF=${ACFD_REAL_DATA:-../shared/data/icartoonface_train}
TV=${ACFD_TV_DATA:-$HOME/data/tv_cartoons}
RUN=${1:-runs/default-cartoons}
EPOCHS=${2:-7}
PIECE=${3:-150}
OUT_WEIGHTS=${ACFD_OUT_WEIGHTS:-acfd/weights/acfd_mid_cartoons.pt}
for set in scooby dexter louie; do
    if [ ! -f "$TV/$set/train.json" ]; then
        echo "train_default.sh: $TV/$set/train.json is missing: build the TV sets first (../shared/data/tv_cartoons/README.md), or set ACFD_TV_DATA" >&2
        exit 2
    fi
done
mkdir -p "$RUN"
.venv/bin/python scripts/split_holdout.py "$ICF/icartoonface_dettrain.csv" "$RUN/split" --fraction 0.1 --seed 0
ICF_IMAGES=$(cd "$ICF/images" && pwd)
TV_ABS=$(cd "$TV" && pwd)
{
    echo "# written by scripts/train_default.sh"
    echo "sources:"
    echo "  - {name: icartoonface, train: split/train.csv, val: split/val.csv, images: $ICF_IMAGES}"
    for set in scooby dexter louie; do
        echo "  - {name: $set, train: $TV_ABS/$set/train.json, val: $TV_ABS/$set/val.json, images: $TV_ABS/$set/images}"
    done
} > "$RUN/sources.yaml"
if ! grep -q "^epoch,$EPOCHS," "$RUN/train/metrics.csv" 2>/dev/null; then
    resume=(--init acfd/weights/acfd_mid_icartoonface.pt)
    [ -f "$RUN/train/last.pt" ] && resume=(--resume)
    .venv/bin/acfd train --data "$RUN/sources.yaml" --preset mid_cartoons --precision auto --batch 16 --seed 0 \
        --workers 1 --threads 2 --log-every 20 --no-progress --epochs "$EPOCHS" --eval-every 2 \
        --pause-after "$PIECE" --out "$RUN/train" "${resume[@]}"
    if ! grep -q "^epoch,$EPOCHS," "$RUN/train/metrics.csv"; then
        echo "train_default.sh: paused; run it again to continue ($RUN/train/last.pt)"
        exit 0
    fi
fi
.venv/bin/acfd eval --weights "$RUN/train/best.pt" --data "$RUN/sources.yaml" --multiscale --no-progress \
    --json "$RUN/eval_multi.json" --errors "$RUN/errors.png" | tee "$RUN/eval_multi.txt"
.venv/bin/python scripts/package_weights.py "$RUN/train/best.pt" "$OUT_WEIGHTS" --threshold-from "$RUN/eval_multi.json"
