"""Evaluate a detector on a detection set: run inference on every image, then AP@0.5 over all of them.

``evaluate(predictor, detection_set, multiscale, cfg)`` returns a plain dict:

* ``ap``: VOC all-point AP at IoU ``iou_threshold`` (:mod:`acfd.training.evaluation.ap`);
* ``precision``, ``recall``, ``scores``: the ranked curve, one entry per detection (NumPy arrays);
* ``final_precision``, ``final_recall``: at the end of the ranking;
* ``images``, ``faces``, ``detections``, ``true_positives``; ``ignore_regions`` and ``ignored`` (the
  detections they absorbed: neither true nor false positives; ``use_ignore=False`` scores as if the
  set had none, so detections on them are false positives);
* ``seconds_per_image``: wall time of inference (resize, network, post-processing) per image,
  image decoding from disk excluded;
* ``multiscale``, ``scales`` (the ``(H, W)`` inputs run), ``iou_threshold``;
* ``skipped``: one line per image that could not be read (those images are left out);
* ``best_f1``: the cut of best F1 on the curve and its score threshold
  (:mod:`acfd.training.evaluation.operating_point`);
* ``at_threshold``: precision, recall, F1 and recall by face size of the detections scoring at least
  ``min_score`` (default: the model's display threshold, ``cfg.display_threshold``).

:func:`json_summary` turns it into JSON-ready values with the curve thinned to a bounded length.
"""

from __future__ import annotations

import time
import numpy as np
import torch
from tqdm import tqdm

from acfd.inference.config import InferenceConfig
from acfd.inference.image_io import ImageError, read_image
from acfd.training.evaluation.ap import average_precision
from acfd.training.evaluation.inference import detect_batch, scales_for
from acfd.training.evaluation.operating_point import at_threshold, best_f1


def evaluate(
    predictor: torch.nn.Module,
    detection_set,
    multiscale: bool,
    cfg: InferenceConfig,
    progress: bool = True,
    limit: int | None = None,
    batch_size: int = 1,
    iou_threshold: float = 0.5,
    min_score: float | None = None,
    use_ignore: bool = True,
    keep_detections: bool = False,
) -> dict:
    """AP and timing of ``predictor`` on ``detection_set.records`` (the first ``limit`` of them);
    ``keep_detections`` adds ``per_image``: the lists ``(detections, ground_truths, ignores)`` that
    ``ap.average_precision`` and ``errors.breakdown_by_size`` take, and ``paths``: each of those
    images' file, in the same order."""
    records = list(detection_set.records)[: limit if limit is not None else None]
    scales = scales_for(cfg, multiscale)
    predictor.eval()
    detections: list[tuple[np.ndarray, np.ndarray]] = []
    ground_truths: list[np.ndarray] = []
    ignores: list[np.ndarray] = []
    paths: list[str] = []
    skipped: list[str] = []
    seconds = 0.0
    batch_size = max(1, int(batch_size))
    bar = tqdm(total=len(records), desc="eval", unit="img", disable=not progress, leave=False)
    try:
        for start in range(0, len(records), batch_size):
            images, kept = [], []
            for record in records[start : start + batch_size]:
                try:
                    images.append(read_image(record.path))
                    kept.append(record)
                except ImageError as err:
                    skipped.append(str(err))
            tic = time.perf_counter()
            results = detect_batch(predictor, images, scales, cfg)
            seconds += time.perf_counter() - tic
            for record, (boxes, scores) in zip(kept, results):
                detections.append((boxes, scores))
                paths.append(str(record.path))
                ground_truths.append(np.asarray(record.boxes, dtype=np.float32).reshape(-1, 4))
                ignore = getattr(record, "ignore", None) if use_ignore else None  # records may be any box holder
                ignores.append(np.asarray([] if ignore is None else ignore, dtype=np.float32).reshape(-1, 4))
            bar.update(len(records[start : start + batch_size]))
    finally:
        bar.close()
    result = average_precision(detections, ground_truths, iou_threshold, ignores)
    images = len(detections)
    kept = {"per_image": (detections, ground_truths, ignores), "paths": paths} if keep_detections else {}
    return kept | {
        "ap": result.ap,
        "precision": result.precision,
        "recall": result.recall,
        "scores": result.scores,
        "final_precision": float(result.precision[-1]) if result.detections else 0.0,
        "final_recall": float(result.recall[-1]) if result.detections else 0.0,
        "images": images,
        "faces": result.faces,
        "detections": result.detections,
        "true_positives": result.true_positives,
        "ignore_regions": int(sum(len(g) for g in ignores)),
        "ignored": result.ignored,
        "seconds_per_image": seconds / images if images else 0.0,
        "multiscale": bool(multiscale),
        "scales": [list(s) for s in scales],
        "iou_threshold": float(iou_threshold),
        "skipped": skipped,
        "best_f1": best_f1(result.precision, result.recall, result.scores),
        "at_threshold": at_threshold(
            detections, ground_truths, cfg.display_threshold if min_score is None else min_score, iou_threshold, ignores
        ),
    }


def thin_indices(length: int, max_points: int) -> np.ndarray:
    """At most ``max_points`` indices spread evenly over ``range(length)``, first and last included."""
    if length <= max_points:
        return np.arange(length)
    return np.unique(np.linspace(0, length - 1, max_points).round().astype(np.int64))


def json_summary(result: dict, max_points: int = 1000) -> dict:
    """``evaluate``'s dict with JSON-ready values; the curve keeps at most ``max_points`` points."""
    keep = thin_indices(len(result["precision"]), max_points)
    summary = {k: v for k, v in result.items() if k not in ("precision", "recall", "scores", "per_image", "paths")}
    summary["ap"] = None if not np.isfinite(result["ap"]) else float(result["ap"])
    summary["precision"] = [round(float(v), 6) for v in np.asarray(result["precision"])[keep]]
    summary["recall"] = [round(float(v), 6) for v in np.asarray(result["recall"])[keep]]
    summary["scores"] = [round(float(v), 6) for v in np.asarray(result["scores"])[keep]]
    summary["curve_length"] = len(result["precision"])  # before thinning
    return summary


def format_report(result: dict) -> list[str]:
    """Human-readable lines, the last one ``mAP@0.5: 0.xxxx``."""
    scales = ", ".join(f"{h}x{w}" for h, w in result["scales"])
    lines = [
        f"images: {result['images']}  faces: {result['faces']}  detections: {result['detections']}  "
        f"true positives: {result['true_positives']}"
    ]
    if result.get("ignore_regions"):
        lines.append(
            f"ignore regions: {result['ignore_regions']}  detections on them (neither hit nor miss): "
            f"{result['ignored']}"
        )
    lines.append(f"scales (HxW): {scales}  s/img: {result['seconds_per_image']:.4f}")
    lines.append(f"precision: {result['final_precision']:.4f}  recall: {result['final_recall']:.4f}")
    if "at_threshold" in result:
        at, best = result["at_threshold"], result["best_f1"]
        sizes = "  ".join(f"{name} {v['found']}/{v['faces']}" for name, v in at["recall_by_size"].items())
        lines.append(
            f"at score >= {at['threshold']:.2f}: precision {at['precision']:.4f}  recall {at['recall']:.4f}  "
            f"F1 {at['f1']:.4f}  faces found by side: {sizes}"
        )
        lines.append(
            f"best F1 {best['f1']:.4f} at score >= {best['threshold']:.3f} "
            f"(precision {best['precision']:.4f}, recall {best['recall']:.4f})"
        )
    iou = result["iou_threshold"]
    label = "mAP@0.5" if iou == 0.5 else f"mAP@{iou:g}"
    lines.append(f"{label}: {result['ap']:.4f}")
    return lines
