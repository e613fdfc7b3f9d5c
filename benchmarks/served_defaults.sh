#!/usr/bin/env bash
# Served throughput of two checkpoints side by side, in one run (issue 22: the new default against the
# old one): each is exported and put in its own CPU model repository (the default engine), then ROUNDS
# times, alternating, served alone by `acfd serve` and swept by `acfd loadtest --concurrency 1:4:1`
# (8 generated 640x384 scenes, the in-process yardstick skipped). Prints each sweep's best infer/s and
# the ratio B / A of their means; every sweep's report stays in OUT/<name>-<round>/.
# Usage: benchmarks/served_defaults.sh OUT A.pt B.pt [ROUNDS]   (default ROUNDS 2)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 3 ]; then
    echo "usage: benchmarks/served_defaults.sh OUT A.pt B.pt [ROUNDS]" >&2
    exit 2
fi
OUT=$1
ROUNDS=${4:-2}
ACFD=.venv/bin/acfd
mkdir -p "$OUT"
declare -A WEIGHTS=([a]=$2 [b]=$3)
for name in a b; do
    [ -f "${WEIGHTS[$name]}" ] || { echo "served_defaults.sh: ${WEIGHTS[$name]} does not exist" >&2; exit 2; }
    if [ ! -f "$OUT/$name-export/model.onnx" ]; then
        $ACFD export --weights "${WEIGHTS[$name]}" --out "$OUT/$name-export" --quiet
    fi
    $ACFD repo --export "$OUT/$name-export" --target cpu --out "$OUT/$name-repo" > /dev/null
done
serve_and_sweep() {  # name round
    local log="$OUT/$1-$2.serve.log"
    $ACFD serve --model-repository "$OUT/$1-repo" --grpc-port 18001 --http-port 18000 --metrics-port 18002 \
        --health-port 18003 > "$log" 2>&1 &
    local pid=$!
    for _ in $(seq 300); do
        curl -sf http://127.0.0.1:18000/v2/models/acfd/ready > /dev/null && break
        kill -0 "$pid" 2> /dev/null || { echo "served_defaults.sh: the server of $1 stopped, see $log" >&2; return 1; }
        sleep 1
    done
    $ACFD loadtest --url 127.0.0.1:18001 --concurrency 1:4:1 --seconds 5 --no-local --out "$OUT/$1-$2" > "$OUT/$1-$2.log"
    kill -INT "$pid"
    wait "$pid" || true
}
for round in $(seq "$ROUNDS"); do
    serve_and_sweep a "$round"
    serve_and_sweep b "$round"
done
.venv/bin/python - "$OUT" "$ROUNDS" "$2" "$3" <<'EOF'
import json
import statistics
import sys
from pathlib import Path

out, rounds = Path(sys.argv[1]), int(sys.argv[2])
best = {
    name: [json.loads((out / f"{name}-{r}" / "summary.json").read_text())["best"] for r in range(1, rounds + 1)]
    for name in "ab"
}
for name, weights in zip("ab", sys.argv[3:5]):
    sweeps = ", ".join(f"{b['infer_per_s']:.2f} (c={b['concurrency']})" for b in best[name])
    print(f"{name}: {weights}: best infer/s per round: {sweeps}")
mean = {name: statistics.mean(b["infer_per_s"] for b in best[name]) for name in "ab"}
print(f"b / a: {mean['b'] / mean['a']:.3f} ({mean['b']:.2f} / {mean['a']:.2f} infer/s, mean of {rounds} rounds)")
EOF
