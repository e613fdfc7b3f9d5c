"""Average precision at one IoU threshold over a whole data set (the iCartoonFace metric).

Contract of :func:`average_precision`:

* Inputs per image, in the same order: detections ``(boxes [D, 4], scores [D])`` and ground-truth
  boxes ``[G, 4]``, all ``(x1, y1, x2, y2)`` in continuous pixel coordinates (IoU without ``+1``).
  Images without faces count: their detections are false positives. Boxes are expected to have
  ``x2 > x1`` and ``y2 > y1`` (post-processing and the loaders guarantee it; COCO would ignore an
  inverted detection, here it is simply a false positive).
* Matching, per image: detections in descending score order (stable); each takes, among the
  ground truths not matched yet, the one of highest IoU if that IoU is ``>= iou_threshold``
  (true positive), else it is a false positive. Each ground truth is matched at most once.
  This is the greedy rule of the COCO evaluator at one threshold.
* Ignore regions (``ignores[i] [M, 4]``, optional; COCO crowd, VOC difficult): a detection not
  matched to a face is *dropped* (neither true nor false positive) when at least ``iou_threshold``
  of its own area lies inside one ignore region (intersection over the detection's area). That
  covers the VOC devkit's rule for difficult faces (IoU >= 0.5 with one; IoU never exceeds this
  ratio) and COCO's for crowd regions. Ignore regions are not faces: they do not count in the recall's
  denominator, and one region may absorb any number of detections.
* Ranking: all detections of all images together by descending score (stable, images in the
  order given), giving precision ``TP / (TP + FP)`` and recall ``TP / faces`` after each one.
* AP: VOC all-point interpolation, the area under the precision envelope
  ``p(r) = max(precision at recall >= r)``: ``sum over recall steps of (r_k - r_{k-1}) * p(r_k)``.
  No detections gives 0; no faces in the whole set gives NaN (AP is undefined).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Face size classes of every per-size figure (the error breakdown, faces found at the display
# threshold): side = sqrt(width * height) of the ground-truth box, in original-image pixels.
SIZE_BINS = (("<32", 0.0, 32.0), ("32-96", 32.0, 96.0), (">=96", 96.0, math.inf))


def box_side(boxes: np.ndarray) -> np.ndarray:
    """``sqrt(w * h)`` of ``[N, 4]`` boxes (0 for an empty or inverted box)."""
    return np.sqrt(np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None))


@dataclass(frozen=True)
class APResult:
    """AP with the curve behind it; arrays follow the global ranking, one entry per detection."""

    ap: float
    precision: np.ndarray  # [D] float64
    recall: np.ndarray  # [D] float64
    scores: np.ndarray  # [D] float64, descending
    true_positive: np.ndarray  # [D] bool
    faces: int
    detections: int
    ignored: int = 0  # detections dropped on ignore regions (not in the arrays)

    @property
    def true_positives(self) -> int:
        return int(self.true_positive.sum())


def box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU ``[len(a), len(b)]`` (float64) of two sets of boxes; 0 where the union is empty."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match_image(
    boxes: np.ndarray, scores: np.ndarray, gt_boxes: np.ndarray, iou_threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching in one image: ``(scores sorted descending, true-positive flags)``."""
    scores, tp, _ = match_faces(boxes, scores, gt_boxes, iou_threshold)
    return scores, tp


def box_iof_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[len(a), len(b)]``: the fraction of each box of ``a``'s area inside each box of ``b`` (0 for empty ``a``)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    area = (np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None))[:, None]
    return np.divide(w * h, area, out=np.zeros_like(w * h), where=area > 0)


def match_faces(
    boxes: np.ndarray,
    scores: np.ndarray,
    gt_boxes: np.ndarray,
    iou_threshold: float = 0.5,
    ignore: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`match_image` plus which ground truths were matched: ``(scores, tp [D], matched [G])``.

    With ``ignore`` regions, the detections they absorb (module docstring) are left out of ``scores``
    and ``tp``, which then hold the kept detections only."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    scores = scores[order]
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)[order]
    tp = np.zeros(scores.shape[0], dtype=bool)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    taken = np.zeros(gt_boxes.shape[0], dtype=bool)
    if scores.shape[0] == 0:
        return scores, tp, taken
    if gt_boxes.shape[0]:
        iou = box_iou_matrix(boxes, gt_boxes)
        for d in range(scores.shape[0]):
            candidates = np.where(taken, -1.0, iou[d])
            best = int(np.argmax(candidates))
            if candidates[best] >= iou_threshold:
                taken[best] = True
                tp[d] = True
    ignore = np.zeros((0, 4)) if ignore is None else np.asarray(ignore, dtype=np.float64).reshape(-1, 4)
    if ignore.shape[0] and scores.shape[0]:
        absorbed = ~tp & (box_iof_matrix(boxes, ignore).max(axis=1) >= iou_threshold)
        scores, tp = scores[~absorbed], tp[~absorbed]
    return scores, tp, taken


def all_point_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """Area under the precision envelope, VOC all-point style (recall must be non-decreasing)."""
    if precision.size == 0:
        return 0.0
    rec = np.concatenate([[0.0], recall, [recall[-1]]])
    prec = np.concatenate([[0.0], precision, [0.0]])
    envelope = np.maximum.accumulate(prec[::-1])[::-1]
    steps = np.flatnonzero(rec[1:] != rec[:-1]) + 1
    return float(np.sum((rec[steps] - rec[steps - 1]) * envelope[steps]))


def average_precision(
    detections: Sequence[tuple[np.ndarray, np.ndarray]],
    ground_truths: Sequence[np.ndarray],
    iou_threshold: float = 0.5,
    ignores: Sequence[np.ndarray] | None = None,
) -> APResult:
    """AP over all images; ``detections[i] = (boxes, scores)``, ``ground_truths[i] = boxes`` and,
    optionally, ``ignores[i] = ignore regions``."""
    if len(detections) != len(ground_truths) or (ignores is not None and len(ignores) != len(detections)):
        raise ValueError(
            f"average_precision: {len(detections)} detection lists for {len(ground_truths)} images"
            + (f" and {len(ignores)} ignore lists" if ignores is not None else "")
        )
    faces = given = 0
    all_scores, all_tp = [], []
    for i, ((boxes, scores), gt) in enumerate(zip(detections, ground_truths)):
        given += int(np.asarray(scores).size)
        image_scores, image_tp, _ = match_faces(
            boxes, scores, gt, iou_threshold, ignores[i] if ignores is not None else None
        )
        all_scores.append(image_scores)
        all_tp.append(image_tp)
        faces += int(np.asarray(gt).reshape(-1, 4).shape[0])
    scores = np.concatenate(all_scores) if all_scores else np.zeros(0)
    tp = np.concatenate(all_tp) if all_tp else np.zeros(0, dtype=bool)
    order = np.argsort(-scores, kind="stable")
    scores, tp = scores[order], tp[order]
    tp_cum = np.cumsum(tp, dtype=np.float64)
    precision = tp_cum / np.arange(1, tp.size + 1, dtype=np.float64)
    recall = tp_cum / faces if faces else np.zeros_like(tp_cum)
    ap = all_point_ap(precision, recall) if faces else float("nan")
    return APResult(
        ap=ap,
        precision=precision,
        recall=recall,
        scores=scores,
        true_positive=tp,
        faces=faces,
        detections=int(tp.size),
        ignored=given - int(tp.size),
    )
