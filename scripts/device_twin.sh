#!/usr/bin/env bash
# The device twin (issue 23): a Python 3.12 virtual environment as close to the H200 machine's python3 as
# PyPI allows (torch 2.11.0, triton 3.6.0, numpy 2.2, opencv-python-headless, onnx, onnxruntime, pyyaml,
# tqdm, matplotlib), then the GPU trip's dry run in it, from a copy of exactly what would travel
# (scripts/gpu_trip.py --dry-run: git's tracked + untracked-not-ignored files and travel/; no ../shared,
# no .venv). What still differs from the device: docs/gpu_trip.md "The device twin".
#
#   scripts/device_twin.sh [OUT]          # default runs/twin; the venv in $ACFD_TWIN (default ~/.cache/acfd-twin)
#
# The data that travels: the trip's packed set (travel/icf/sources.yaml, scripts/pack_data.py) when it is
# there; else (a clean clone, CI) 32 generated scenes packed by the same packer into travel/twin.
#
# The venv is built once and reused while its recipe (this file's TWIN_PKGS) is unchanged; a rebuild installs
# from the wheelhouse $ACFD_TWIN_WHEELS without downloading again. PyPI's torch for Linux x86_64 is a CUDA
# build (2.11.0+cu130, as on the device): its nvidia-* wheels (about 2.2 GB) come with it, so that
# `import torch` finds libcudnn.so.9; it runs on the CPU here.
# numpy 2.2, not the device's 2.5: Triton 3.6's interpreter (TRITON_INTERPRET=1, the dry run's kernels) fails
# under numpy 2.4 and 2.5 ("only 0-dimensional arrays can be converted to Python scalars", int() of the
# 1-element program id in the DAM kernel's loop bound); the device runs the compiled kernels, where numpy
# plays no part. Training, evaluation and packaging were run under numpy 2.5.5 too (docs/gpu_trip.md).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/twin}
TWIN=${ACFD_TWIN:-$HOME/.cache/acfd-twin}
WHEELS=${ACFD_TWIN_WHEELS:-$HOME/.cache/acfd-twin-wheels}  # about 2.7 GB: torch 2.11.0 and its CUDA 13 wheels
PY312=${ACFD_PY312:-}
if [ -z "$PY312" ]; then  # the first Python 3.12 that runs (a pyenv shim may not)
    for candidate in python3.12 "$HOME"/.pyenv/versions/3.12*/bin/python /usr/local/bin/python3.12 /usr/bin/python3.12; do
        if "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then
            PY312=$candidate
            break
        fi
    done
fi
TWIN_PKGS="torch==2.11.0 triton==3.6.0 numpy==2.2.* opencv-python-headless onnx onnxruntime pyyaml tqdm matplotlib"
if [ -z "$PY312" ]; then
    echo "device_twin.sh: no Python 3.12 on this machine (set ACFD_PY312): the twin cannot be built" >&2
    exit 3
fi
started=$(date +%s)
if [ ! -x "$TWIN/bin/python" ] || [ "$(cat "$TWIN/.recipe" 2>/dev/null)" != "$TWIN_PKGS" ]; then
    # The wheels once into a wheelhouse (pip keeps no cache of them here), then an offline install from it.
    mkdir -p "$WHEELS"
    # shellcheck disable=SC2086
    "$PY312" -m pip download -q --disable-pip-version-check --only-binary=:all: -d "$WHEELS" $TWIN_PKGS
    rm -rf "$TWIN"
    "$PY312" -m venv "$TWIN"
    # shellcheck disable=SC2086
    "$TWIN/bin/python" -m pip install -q --disable-pip-version-check --no-index --find-links "$WHEELS" $TWIN_PKGS
    echo "$TWIN_PKGS" > "$TWIN/.recipe"
fi
built=$(( $(date +%s) - started ))
"$TWIN/bin/python" - <<'EOF'
import sys, numpy, torch, triton, cv2, onnx, onnxruntime
print(f"device twin: Python {sys.version.split()[0]}, torch {torch.__version__}, triton {triton.__version__}, "
      f"numpy {numpy.__version__}, opencv {cv2.__version__}, onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}")
assert numpy.__version__.startswith("2.") and triton.__version__ == "3.6.0" and sys.version_info[:2] == (3, 12)
EOF
echo "device twin: venv ready in ${built} s ($TWIN)"
DATA=travel/icf/sources.yaml
if [ ! -f "$DATA" ]; then
    DATA=travel/twin/sources.yaml
    rm -rf runs/twin_scenes travel/twin
    .venv/bin/acfd synth runs/twin_scenes --images 32 --seed 0 --size 320x240 >/dev/null
    printf 'sources:\n  - {name: scenes, train: annotations.json, val: annotations.json, images: images}\n' \
        > runs/twin_scenes/sources.yaml
    .venv/bin/python scripts/pack_data.py runs/twin_scenes/sources.yaml travel/twin --with-val >/dev/null
    echo "device twin: no travel/icf; packed 32 generated scenes into travel/twin"
fi
rm -rf "$OUT"
"$TWIN/bin/python" scripts/gpu_trip.py "$OUT" --dry-run --python "$TWIN/bin/python" --data "$DATA"
echo "device twin: dry run passed in $(( $(date +%s) - started )) s in all -> $OUT/results.json"
