#!/usr/bin/env bash
# The accuracy cost of packing (issue 23): the same gentle fine-tune of the embedded default (mid at 384,
# 400 iterations of batch 8, LR 0.005 after 50 warm-up iterations, seed 0) once from the original
# iCartoonFace images and once from the packed copies (travel/icf, scripts/pack_data.py), both scored on
# the ORIGINAL fixed hold-out (runs/split, seed 0). CPU fp32/bf16 training is deterministic, so the only
# difference between the two runs is the images. About 2 x 10 minutes on a quiet 2-core box.
#   scripts/pack_cost.sh [OUT]        (default runs/pack_cost; needs travel/icf and ../shared/data)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/pack_cost}
ICF=${ACFD_REAL_DATA:-../shared/data/icartoonface_train}
[ -f travel/icf/sources.yaml ] || { echo "pack_cost.sh: no travel/icf: pack it first (docs/gpu_trip.md)" >&2; exit 2; }
mkdir -p "$OUT"
.venv/bin/python scripts/split_holdout.py "$ICF/icartoonface_dettrain.csv" "$OUT/split" --fraction 0.1 --seed 0
printf 'sources:\n  - {name: icartoonface, train: split/train.csv, val: split/val.csv, images: %s}\n' \
    "$(cd "$ICF/images" && pwd)" > "$OUT/originals.yaml"
printf 'base: mid\ntrain:\n  base_lr: 0.005\n  warmup_iters: 50\n' > "$OUT/preset.yaml"
for arm in originals packed; do
    data=$OUT/originals.yaml
    [ "$arm" = packed ] && data=travel/icf/sources.yaml
    rm -rf "$OUT/$arm"
    .venv/bin/acfd train --data "$data" --preset "$OUT/preset.yaml" --size 384 --batch 8 --max-iters 400 --seed 0 \
        --init acfd/weights/acfd_mid_icartoonface.pt --workers 1 --threads 2 --eval-every 1000000 --no-progress \
        --out "$OUT/$arm"
    .venv/bin/acfd eval --weights "$OUT/$arm/last.pt" --data "$OUT/split/val.csv" --images "$ICF/images" \
        --no-progress --json "$OUT/$arm.json" | tail -1
done
