"""CPU engines side by side on one export: latency per test scale and three-scale throughput.

    .venv/bin/python benchmarks/cpu_engines.py EXPORT [--rounds 5] [--seconds 3] [--threads 0] [--json OUT]

Every engine of ``acfd.inference.engines`` the export can run (the int8 ones need
``acfd export --int8``) is opened with the same thread count and fed the same uint8 inputs (a
generated scene resized to each test scale). Rounds alternate between engines so that a change in
machine load hits all of them alike; the median over rounds is reported, with the ratio to ONNX
Runtime float32. Hold-out accuracy is not measured here: ``acfd eval --export EXPORT --engine E``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    from acfd.inference.engines import ENGINES, EngineError, open_engine
    from acfd.inference.manifest import read_manifest
    from acfd.inference import image_io
    from acfd.scenes.synth import generate_scene

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per engine per round")
    parser.add_argument("--threads", type=int, default=0, help="engine threads, 0 = every core")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    manifest = read_manifest(args.export)
    scales = list(manifest.test_scales)
    image, _ = generate_scene(np.random.default_rng((0, 0)), 640, 384)
    inputs = [image_io.resize_rgb(image, h, w)[None] for h, w in scales]
    engines = {}
    for name in ENGINES:
        try:
            engines[name] = open_engine(args.export, manifest, name, threads=args.threads)
        except EngineError as err:
            print(f"skipping {name}: {err}", file=sys.stderr)
    per_scale: dict[str, list[list[float]]] = {name: [[] for _ in scales] for name in engines}
    throughput: dict[str, list[float]] = {name: [] for name in engines}
    for round_index in range(args.rounds):
        for name, engine in engines.items():
            for k, pixels in enumerate(inputs):  # per-scale latency, batch 1
                times = []
                for _ in range(5):
                    start = time.perf_counter()
                    engine(pixels)
                    times.append(time.perf_counter() - start)
                per_scale[name][k].append(1000.0 * statistics.median(times))
            count, start = 0, time.perf_counter()
            while time.perf_counter() - start < args.seconds:
                for pixels in inputs:
                    engine(pixels)
                count += 1
            throughput[name].append(count / (time.perf_counter() - start))
        print(f"round {round_index + 1}/{args.rounds} done", file=sys.stderr)

    rows = []
    base = statistics.median(throughput["onnxruntime"]) if "onnxruntime" in throughput else None
    for name, engine in engines.items():
        ms = [statistics.median(values) for values in per_scale[name]]
        rate = statistics.median(throughput[name])
        rows.append(
            {
                "engine": name,
                "described": engine.describe(),
                "ms_per_scale": dict(zip([f"{h}x{w}" for h, w in scales], ms)),
                "three_scales_ms": sum(ms),
                "images_per_s": rate,
                "vs_onnxruntime_fp32": rate / base if base else None,
            }
        )
    header = f"{'engine':<18} {'precision':<26}" + "".join(f" {f'{h}x{w} ms':>12}" for h, w in scales)
    print(header + f" {'img/s':>8} {'vs ORT fp32':>12}")
    for row in rows:
        cells = "".join(f" {v:>12.1f}" for v in row["ms_per_scale"].values())
        ratio = f"{row['vs_onnxruntime_fp32']:.2f}x" if row["vs_onnxruntime_fp32"] else "-"
        print(f"{row['engine']:<18} {row['described']:<26}{cells} {row['images_per_s']:>8.2f} {ratio:>12}")
    if args.json:
        args.json.write_text(
            json.dumps({"export": str(args.export), "preset": manifest.preset, "rows": rows}, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
