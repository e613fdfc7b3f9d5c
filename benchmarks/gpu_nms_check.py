"""GPU check of NMS for a session with a GPU: CuPy kernel vs NumPy, same kept indices, and timings.

    python benchmarks/gpu_nms_check.py OUT_DIR [--repeats 20]

Runs random and tie-heavy inputs (up to 20,000 boxes) through ``acfd.kernels.nms.nms`` with NumPy
and with CuPy, checks that the kept indices are identical, times both (median of ``--repeats``
runs after a warm-up; CuPy timed with device synchronisation, inputs already on the GPU) and writes
``OUT_DIR/gpu_nms_check.json``. Exit code 0: all cases agree; 1: a mismatch; 2: no usable GPU
(the JSON then says why). Not a pytest file: it needs a GPU, so it is run by hand.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from acfd.kernels.nms import cupy_usable, nms


def random_case(rng, n, extent=1000.0, max_side=150.0):
    xy = rng.uniform(0, extent, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(2, max_side, (n, 2))], axis=1).astype(np.float32)
    return boxes, rng.random(n).astype(np.float32)


def tie_case(rng, n):
    xy = rng.integers(0, 16, (n, 2)) * 4
    boxes = np.concatenate([xy, xy + rng.integers(1, 5, (n, 2)) * 8], axis=1).astype(np.float32)
    return boxes, (rng.integers(0, 5, n) / 4).astype(np.float32)


def median_seconds(fn, repeats: int, sync=lambda: None) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    report: dict = {"python": platform.python_version(), "numpy": np.__version__, "cases": []}
    reason = cupy_usable()
    if reason is not None:
        report["error"] = reason
        (args.out_dir / "gpu_nms_check.json").write_text(json.dumps(report, indent=1) + "\n")
        print(f"gpu_nms_check: {reason}", file=sys.stderr)
        return 2
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    report["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    report["cupy"] = cupy.__version__
    sync = cupy.cuda.Device().synchronize
    rng = np.random.default_rng(0)
    cases = [("random", n, thr, *random_case(rng, n)) for n in (100, 1000, 3000, 10000, 20000) for thr in (0.3, 0.55)]
    cases += [("tie-heavy", n, thr, *tie_case(rng, n)) for n in (500, 3000) for thr in (0.0, 0.5, 0.55)]
    cases += [("one box", 1, 0.5, *random_case(rng, 1)), ("empty", 0, 0.5, *random_case(rng, 0))]
    all_ok = True
    for kind, n, thr, boxes, scores in cases:
        expected = nms(boxes, scores, thr)
        boxes_gpu, scores_gpu = cupy.asarray(boxes), cupy.asarray(scores)
        got = cupy.asnumpy(nms(boxes_gpu, scores_gpu, thr))
        ok = got.dtype == np.int64 and np.array_equal(got, expected)
        all_ok &= bool(ok)
        entry = {"kind": kind, "boxes": n, "iou_threshold": thr, "kept": int(expected.size), "identical": bool(ok)}
        if not ok:
            first = next((i for i in range(min(got.size, expected.size)) if got[i] != expected[i]), None)
            entry["first_difference"] = first
            entry["kept_gpu"] = int(got.size)
        repeats = args.repeats if n <= 3000 else max(3, args.repeats // 4)
        entry["numpy_ms"] = 1e3 * median_seconds(lambda: nms(boxes, scores, thr), repeats)
        entry["cupy_ms"] = 1e3 * median_seconds(lambda: nms(boxes_gpu, scores_gpu, thr), repeats, sync)
        report["cases"].append(entry)
        print(f"{kind:9s} n={n:6d} thr={thr:.2f} kept={entry['kept']:6d} identical={ok} "
              f"numpy={entry['numpy_ms']:9.3f} ms cupy={entry['cupy_ms']:8.3f} ms")
    report["all_identical"] = all_ok
    (args.out_dir / "gpu_nms_check.json").write_text(json.dumps(report, indent=1) + "\n")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
