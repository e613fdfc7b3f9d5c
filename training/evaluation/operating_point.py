"""What a user of the detector sees at one score threshold: precision, recall, F1, and recall by face
size; and the threshold of best F1, which a model ships as its display threshold.

- ``best_f1(result)``: over the ranked curve of :func:`acfd.training.evaluation.ap.average_precision`,
  the cut with the highest F1 = 2PR / (P + R). Cuts fall only between distinct scores (a threshold
  keeps every detection scoring at least it); the threshold is the lowest score kept.
- ``at_threshold(detections, ground_truths, threshold)``: the detections scoring ``>= threshold``
  matched to the faces by the greedy rule of ``ap.match_image`` (``ap.match_faces``); precision, recall, F1, and the
  recall of faces in each size bin (side = sqrt(w * h) in original pixels: < 32, 32-96, >= 96).
  Detections absorbed by ignore regions (``ignores``, as in ``ap``) count as neither.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from acfd.training.evaluation.ap import SIZE_BINS, box_side, match_faces


def _f1(p: np.ndarray | float, r: np.ndarray | float):
    p, r = np.asarray(p, np.float64), np.asarray(r, np.float64)
    return np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)


def best_f1(precision: np.ndarray, recall: np.ndarray, scores: np.ndarray) -> dict:
    """``{"f1", "threshold", "precision", "recall"}`` at the cut of best F1 (zeros when empty)."""
    scores = np.asarray(scores, np.float64)
    if scores.size == 0:
        return {"f1": 0.0, "threshold": 1.0, "precision": 0.0, "recall": 0.0}
    last_of_score = np.flatnonzero(np.append(scores[1:] != scores[:-1], True))  # ends of tie groups
    f1 = _f1(np.asarray(precision)[last_of_score], np.asarray(recall)[last_of_score])
    k = last_of_score[int(np.argmax(f1))]
    return {
        "f1": float(f1.max()),
        "threshold": float(scores[k]),
        "precision": float(precision[k]),
        "recall": float(recall[k]),
    }


def at_threshold(
    detections: Sequence[tuple[np.ndarray, np.ndarray]],
    ground_truths: Sequence[np.ndarray],
    threshold: float,
    iou_threshold: float = 0.5,
    ignores: Sequence[np.ndarray] | None = None,
) -> dict:
    tp = fp = 0
    found = {name: 0 for name, _, _ in SIZE_BINS}
    total = {name: 0 for name, _, _ in SIZE_BINS}
    for i, ((boxes, scores), gt) in enumerate(zip(detections, ground_truths)):
        scores = np.asarray(scores, np.float64).reshape(-1)
        keep = scores >= threshold
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)[keep]
        gt = np.asarray(gt, np.float64).reshape(-1, 4)
        _, kept, matched = match_faces(
            boxes, scores[keep], gt, iou_threshold, ignores[i] if ignores is not None else None
        )
        tp += int(matched.sum())
        fp += len(kept) - int(matched.sum())
        side = box_side(gt)
        for name, lo, hi in SIZE_BINS:
            in_bin = (side >= lo) & (side < hi)
            total[name] += int(in_bin.sum())
            found[name] += int((in_bin & matched).sum())
    faces = sum(total.values())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / faces if faces else 0.0
    return {
        "threshold": float(threshold),
        "precision": precision,
        "recall": recall,
        "f1": float(_f1(precision, recall)),
        "true_positives": tp,
        "false_positives": fp,
        "recall_by_size": {
            name: {
                "found": found[name],
                "faces": total[name],
                "recall": found[name] / total[name] if total[name] else None,
            }
            for name, _, _ in SIZE_BINS
        },
    }


def best_mean_f1(curves: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict:
    """The one threshold of best mean F1 over several hold-outs, each given as its ranked
    ``(precision, recall, scores)``: ``{"f1" (the mean), "threshold", "f1_per_set"}``.

    Candidate thresholds are every score of every set; at threshold ``t`` a set keeps its detections
    scoring ``>= t`` (the cut :func:`best_f1` would take there); a set with nothing kept has F1 0."""
    candidates = np.unique(np.concatenate([np.asarray(s, np.float64) for _, _, s in curves] or [np.zeros(0)]))
    if candidates.size == 0:
        return {"f1": 0.0, "threshold": 1.0, "f1_per_set": [0.0] * len(curves)}
    per_set = []
    for precision, recall, scores in curves:
        scores = np.asarray(scores, np.float64)
        if scores.size == 0:
            per_set.append(np.zeros(candidates.size))
            continue
        kept = np.searchsorted(-scores, -candidates, side="right")  # detections scoring >= t
        last = np.maximum(kept - 1, 0)
        p = np.where(kept > 0, np.asarray(precision, np.float64)[last], 0.0)
        r = np.where(kept > 0, np.asarray(recall, np.float64)[last], 0.0)
        per_set.append(_f1(p, r))
    mean = np.mean(per_set, axis=0)
    k = int(np.argmax(mean))
    return {"f1": float(mean[k]), "threshold": float(candidates[k]), "f1_per_set": [float(f[k]) for f in per_set]}
