"""Post-processing of paper section 4.1, shared by evaluation and the serving postprocess model.

One algorithm for both (NumPy on CPUs, CuPy on GPUs; this module must not import torch):

1. per test scale, keep the predictions with score ``> score_threshold`` (0.08) and of those the
   ``pre_nms_topk`` (1000) highest (:func:`select_per_scale`);
2. map each scale's boxes back to original-image pixels, per axis: the network input of a scale is
   the image resized to ``(in_h, in_w)`` without keeping the aspect ratio, so
   ``x_orig = x_in / scale_x`` with ``scale_x = in_w / image_w`` (likewise y);
3. merge the scales, clip the boxes to the image ``[0, W] x [0, H]`` and drop those left with no
   area (wholly outside the image); clipping comes before NMS so IoUs are those of the boxes that
   are reported;
4. NMS at IoU ``nms_iou`` (0.55) with :func:`acfd.kernels.nms.nms`, stopping at the
   ``max_detections`` (100) highest kept (:func:`finalize`): the same boxes as a full NMS cut to
   100, without suppressing among the thousands that would be cut anyway.

Boxes are ``(x1, y1, x2, y2)`` float32; results come back in descending score order (ties keep
their input order: scale by scale, then by anchor).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

import numpy as np

from acfd.kernels.nms import module_of, nms
from acfd.inference.config import InferenceConfig


def descending_order(scores, xp: ModuleType):
    """Stable descending sort of ``scores`` (equal scores keep their order)."""
    key = -scores.astype(xp.float32) + xp.float32(0.0)
    if xp is np:
        return np.argsort(key, kind="stable")
    return xp.argsort(key)  # cupy.argsort is always stable


def select_per_scale(scores, boxes, score_threshold: float, topk: int, xp: ModuleType | None = None):
    """Scores ``> score_threshold``, at most ``topk`` of them, highest first: ``(scores [K], boxes [K, 4])``."""
    xp = module_of(scores) if xp is None else xp
    scores = xp.asarray(scores, dtype=xp.float32).reshape(-1)
    boxes = xp.asarray(boxes, dtype=xp.float32).reshape(-1, 4)
    if scores.shape[0] != boxes.shape[0]:
        raise ValueError(f"postprocess: {scores.shape[0]} scores but {boxes.shape[0]} boxes")
    passing = xp.flatnonzero(scores > xp.float32(score_threshold))
    topk = max(int(topk), 0)
    if xp is np and passing.size > topk > 0:
        passing = _top_positions(scores, passing, topk)
    scores, boxes = scores[passing], boxes[passing]
    order = descending_order(scores, xp)[:topk]
    return scores[order], boxes[order]


def _top_positions(scores: np.ndarray, passing: np.ndarray, topk: int) -> np.ndarray:
    """The ``topk`` of ``passing`` a stable descending sort would put first, found by partition:
    every score above the ``topk``-th largest, then the lowest positions among those equal to it."""
    values = scores[passing]
    cut = np.partition(values, values.size - topk)[values.size - topk]
    above = passing[values > cut]
    tied = passing[values == cut][: topk - above.size]
    return np.sort(np.concatenate([above, tied]))  # positions in input order, as before the cut


def finalize(
    per_scale: Sequence[tuple[object, object, tuple[float, float]]],
    nms_iou: float,
    max_detections: int,
    image_w: int,
    image_h: int,
    xp: ModuleType | None = None,
):
    """Merge the scales' selected predictions into final detections in original-image pixels.

    ``per_scale`` holds ``(scores [K], boxes [K, 4], (scale_x, scale_y))`` per test scale, boxes in
    that scale's input pixels and ``scale = input size / image size`` per axis. Returns
    ``(boxes [N, 4] float32 clipped to the image, scores [N] float32)``, ``N <= max_detections``.
    """
    if xp is None:
        xp = module_of(per_scale[0][0]) if per_scale else np
    all_scores, all_boxes = [], []
    for scores, boxes, (scale_x, scale_y) in per_scale:
        factor = xp.asarray([scale_x, scale_y, scale_x, scale_y], dtype=xp.float32)
        all_boxes.append(xp.asarray(boxes, dtype=xp.float32).reshape(-1, 4) / factor)
        all_scores.append(xp.asarray(scores, dtype=xp.float32).reshape(-1))
    if not all_scores:
        return xp.zeros((0, 4), dtype=xp.float32), xp.zeros((0,), dtype=xp.float32)
    scores = xp.concatenate(all_scores)
    boxes = xp.concatenate(all_boxes)
    upper = xp.asarray([image_w, image_h, image_w, image_h], dtype=xp.float32)
    boxes = xp.minimum(xp.maximum(boxes, xp.float32(0.0)), upper)
    has_area = xp.flatnonzero((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]))
    scores, boxes = scores[has_area], boxes[has_area]
    keep = nms(boxes, scores, nms_iou, xp=xp, max_keep=max(int(max_detections), 0))
    return boxes[keep], scores[keep]


def postprocess(
    outputs: Sequence[tuple[object, object, tuple[int, int]]],
    image_hw: tuple[int, int],
    cfg: InferenceConfig,
    xp: ModuleType | None = None,
):
    """Steps 1-4 for one image: ``outputs`` holds ``(scores [A], boxes [A, 4], (in_h, in_w))`` per
    scale, straight from the network; ``image_hw`` is the original ``(height, width)``.
    Returns ``(boxes [N, 4], scores [N])`` as :func:`finalize` does."""
    image_h, image_w = image_hw
    per_scale = []
    for scores, boxes, (in_h, in_w) in outputs:
        kept_scores, kept_boxes = select_per_scale(scores, boxes, cfg.score_threshold, cfg.pre_nms_topk, xp)
        per_scale.append((kept_scores, kept_boxes, (in_w / image_w, in_h / image_h)))
    return finalize(per_scale, cfg.nms_iou, cfg.max_detections, image_w, image_h, xp)
