"""NumPy NMS that stops at the top-K against the full run, side by side on the same inputs.

    .venv/bin/python benchmarks/nms_topk.py [--boxes 3000] [--keep 100] [--repeats 30] [--json OUT]

Inputs: ``--boxes`` candidates jittered around 10, 200 and 3,000 face boxes (dense to sparse
suppression), as many boxes uniform over 600 x 600 px with sides of 1 to 120 px (the CuPy test's
case), and the real merged candidates of the embedded model on three generated scenes (the
post-processing's input: each scale's top 1,000 above 0.08, mapped back and clipped). For each, the
median time of ``nms(..., max_keep=K)`` and of the full ``nms(...)`` (then cut to K, as before
issue 14), their ratio, and a check that both keep the same boxes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def crowded(rng: np.random.Generator, n: int, faces: int, extent: float = 1000.0):
    centres = rng.uniform(0, extent, (faces, 2))
    sides = rng.uniform(10, 80, faces)
    owner = rng.integers(0, faces, n)
    xy = centres[owner] + rng.normal(0, 0.15, (n, 2)) * sides[owner, None]
    wh = sides[owner, None] * rng.uniform(0.8, 1.2, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32), rng.random(n).astype(np.float32)


def model_candidates(count: int):
    """The embedded model's merged, clipped candidates (what NMS sees) on ``count`` generated scenes."""
    from acfd.inference.pipeline import InProcessPipeline, prepare
    from acfd.scenes.synth import scene_png
    from acfd.export.graph import export_model
    from acfd.inference.postprocess import select_per_scale
    from acfd.weights import DEFAULT_WEIGHTS

    with tempfile.TemporaryDirectory() as tmp:
        export_model(DEFAULT_WEIGHTS, tmp, progress=False)
        pipeline = InProcessPipeline(tmp, engine="onnxruntime")
        cases = []
        for i in range(count):
            pixels, (h, w) = prepare(scene_png(np.random.default_rng((0, i)), 640, 384), pipeline.cfg.test_scales)
            boxes, scores = [], []
            for scale_pixels, (sh, sw) in zip(pixels, pipeline.cfg.test_scales):
                s, b = pipeline.engine(scale_pixels)
                s, b = select_per_scale(s[0], b[0], pipeline.cfg.score_threshold, pipeline.cfg.pre_nms_topk)
                boxes.append(b / np.array([sw / w, sh / h, sw / w, sh / h], np.float32))
                scores.append(s)
            merged = np.clip(np.concatenate(boxes), 0, [w, h, w, h]).astype(np.float32)
            cases.append((f"model, scene {i}", merged, np.concatenate(scores)))
    return cases


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    from acfd.kernels.nms import nms

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--boxes", type=int, default=3000)
    parser.add_argument("--keep", type=int, default=100)
    parser.add_argument("--iou", type=float, default=0.55)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    cases = [(f"{faces} faces", *crowded(rng, args.boxes, faces)) for faces in (10, 200, 3000)]
    xy = rng.uniform(0, 600, (args.boxes, 2))
    uniform = np.concatenate([xy, xy + rng.uniform(1, 120, (args.boxes, 2))], axis=1).astype(np.float32)
    cases.append(("uniform 600 px", uniform, rng.random(args.boxes).astype(np.float32)))
    cases += model_candidates(3)
    rows = []
    print(f"{'input':<18} {'boxes':>6} {'kept (all)':>10} {'full ms':>9} {'top-K ms':>9} {'speed-up':>9}")
    for name, boxes, scores in cases:
        full = nms(boxes, scores, args.iou)
        first = nms(boxes, scores, args.iou, max_keep=args.keep)
        same = first.tolist() == full[: args.keep].tolist()
        full_ms = median_ms(lambda: nms(boxes, scores, args.iou)[: args.keep], args.repeats)
        topk_ms = median_ms(lambda: nms(boxes, scores, args.iou, max_keep=args.keep), args.repeats)
        rows.append({"input": name, "boxes": len(boxes), "kept_all": len(full), "full_ms": full_ms,
                     "topk_ms": topk_ms, "speedup": full_ms / topk_ms, "same_boxes": same})  # fmt: skip
        flag = "" if same else "  DIFFERENT BOXES"
        print(
            f"{name:<18} {len(boxes):>6} {len(full):>10} {full_ms:>9.2f} {topk_ms:>9.2f} "
            f"{full_ms / topk_ms:>8.1f}x{flag}"
        )
    if args.json:
        args.json.write_text(json.dumps({"keep": args.keep, "iou": args.iou, "rows": rows}, indent=2) + "\n")
    return 0 if all(row["same_boxes"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
