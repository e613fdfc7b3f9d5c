"""Greedy non-maximum suppression in NumPy: the CPU form of the one NMS algorithm of the project.

Contract (shared with :mod:`acfd.kernels.nms.cupy_nms`, which must return the same indices):

* boxes ``[N, 4]`` are ``(x1, y1, x2, y2)`` in continuous pixel coordinates (no ``+1``), finite;
  scores ``[N]``.
* Boxes are visited in descending score order; ties keep the lower index first (stable sort).
* A visited box that is still alive is kept and suppresses every later box whose IoU with it is
  strictly greater than ``iou_threshold``.
* IoU is computed in float32, in this order: ``w = max(min(x2) - max(x1), 0)``, likewise ``h``,
  ``inter = w * h``, ``area = max(x2 - x1, 0) * max(y2 - y1, 0)``,
  ``union = (area_kept + area_other) - inter``, ``iou = inter / union`` (0 where ``union <= 0``,
  so zero-area boxes never suppress each other). The CUDA kernel uses the same operations
  without fused multiply-adds, so both paths see bit-identical IoUs.
* Returns the kept indices into the input, int64, in descending-score order.
* ``max_keep``: stop once that many boxes are kept. The boxes greedy NMS keeps first do not depend
  on what it would keep later, so the result is the full run's first ``max_keep`` indices, found in
  O(max_keep * N) instead of O(N^2).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

import numpy as np


def sort_by_score(scores: np.ndarray) -> np.ndarray:
    """Indices that order ``scores`` descending; equal scores keep their input order."""
    # "+ 0.0" turns -0.0 into +0.0 so signed zeros tie, as they do under NumPy's comparison.
    return np.argsort(-scores.astype(np.float32) + np.float32(0.0), kind="stable")


def iou_matrix(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """IoU ``[R, C]`` (float32) of boxes ``rows [R, 4]`` (the kept side) against ``cols [C, 4]``,
    in the contract's operation order."""
    zero = np.float32(0.0)
    a, b = rows[:, None, :], cols[None, :, :]
    w = np.maximum(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), zero)
    h = np.maximum(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), zero)
    inter = w * h
    area_rows = np.maximum(rows[:, 2] - rows[:, 0], zero) * np.maximum(rows[:, 3] - rows[:, 1], zero)
    area_cols = np.maximum(cols[:, 2] - cols[:, 0], zero) * np.maximum(cols[:, 3] - cols[:, 1], zero)
    union = (area_rows[:, None] + area_cols[None, :]) - inter
    iou = np.zeros_like(inter)
    np.divide(inter, union, out=iou, where=union > zero)
    return iou


def nms_numpy(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_keep: int | None = None) -> np.ndarray:
    """Kept indices (int64, descending score) after greedy NMS, at most ``max_keep`` of them (all
    when ``None``); see the module docstring.

    With ``max_keep`` below the box count the one-box-at-a-time loop runs (``_first_kept``): each
    kept box is compared with the boxes still alive after it, which are then compacted.

    Work is blocked to stay fast in NumPy: the sorted boxes are taken ``block`` rows at a time; the
    rows still alive get their IoU against every later box still alive in one array operation,
    then a short serial pass keeps a row unless an earlier kept box suppressed it, and ORs the
    row's "IoU above threshold" flags into the suppressed set. The result is that of the plain
    one-box-at-a-time loop.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    n = boxes.shape[0]
    if n != scores.shape[0]:
        raise ValueError(f"nms: {n} boxes but {scores.shape[0]} scores")
    if n == 0:
        return np.zeros((0,), dtype=np.int64)
    threshold = np.float32(iou_threshold)
    order = sort_by_score(scores)
    sorted_boxes = boxes[order]
    if max_keep is not None and max_keep < n:
        return order[_first_kept(sorted_boxes, threshold, max(int(max_keep), 0))].astype(np.int64)
    removed = np.zeros(n, dtype=bool)
    kept: list[int] = []
    block = int(np.clip(1_000_000 // n, 32, 512))  # bounds the [rows, cols] temporaries to ~1M entries
    for start in range(0, n, block):
        rows = np.flatnonzero(~removed[start : start + block]) + start
        if rows.size == 0:
            continue
        cols = np.flatnonzero(~removed[start:]) + start  # rows is a prefix-ordered subset of cols
        over = iou_matrix(sorted_boxes[rows], sorted_boxes[cols]) > threshold
        cols_removed = np.zeros(cols.size, dtype=bool)
        for k, col in enumerate(np.searchsorted(cols, rows).tolist()):
            if cols_removed[col]:
                continue
            kept.append(int(rows[k]))
            cols_removed |= over[k]
        removed[cols[cols_removed]] = True
    return order[np.asarray(kept, dtype=np.int64)].astype(np.int64)


def _first_kept(sorted_boxes: np.ndarray, threshold: np.float32, max_keep: int) -> np.ndarray:
    """Positions (in score order) of the first ``max_keep`` boxes greedy NMS keeps.

    Boxes are visited in score order; each one still alive is kept and suppresses the boxes it
    overlaps by more than the threshold ``t``. Only boxes that can pass ``t`` are looked at: the
    boxes are also ordered by x1, and a slice of that order is found by binary search. For ``t > 0``,
    IoU > t needs the x-overlap ``ox`` above ``t * w`` and above ``t * w_other`` (IoU <= ox / w for
    either width), so ``w_other < w / t`` and ``x1 + t * w - w / t < x1_other < x2 - t * w``: a slice
    about 1.7 widths of the kept box wide at t = 0.55. For ``t <= 0`` the slice is every box that
    can overlap at all, ``x1 - widest <= x1_other <= x2``. Bounds are widened by a relative margin far
    above float32 rounding of the IoU. The IoU is the contract's (kept box first), computed for
    every box of the slice, so the result equals the blocked loop's; the slice only saves boxes
    that cannot be suppressed. Scalars the loop
    reads per box are Python lists (``bisect``), the per-box NumPy calls are few: a couple of
    microseconds of interpreter per kept box instead of tens.
    """
    zero = np.float32(0.0)
    n = sorted_boxes.shape[0]
    area = np.maximum(sorted_boxes[:, 2] - sorted_boxes[:, 0], zero) * np.maximum(
        sorted_boxes[:, 3] - sorted_boxes[:, 1], zero
    )
    by_x = np.argsort(sorted_boxes[:, 0], kind="stable")
    x_first = sorted_boxes[by_x, 0].tolist()
    corners = np.ascontiguousarray(sorted_boxes[by_x].T)  # [4, n]: rows x1, y1, x2, y2, columns in x1 order
    starts, ends = corners[0:2], corners[2:4]
    areas = area[by_x]
    box_starts = sorted_boxes[:, 0:2, None]  # [n, 2, 1]: the kept box's x1, y1 against a slice's columns
    box_ends = sorted_boxes[:, 2:4, None]
    left, right = sorted_boxes[:, 0].tolist(), sorted_boxes[:, 2].tolist()
    widths = sorted_boxes[:, 2] - sorted_boxes[:, 0]
    # A margin of a pixel plus a relative bit keeps float rounding from narrowing the slice.
    reach = float(max(widths.max(initial=0.0), 0.0)) + 1.0
    loose = float(threshold) * (1.0 - 1e-4)  # the threshold the slice bounds assume, a little lower
    suppressed = np.zeros(n, dtype=bool)  # by score position
    kept: list[int] = []
    position = 0
    with np.errstate(divide="ignore", invalid="ignore"):  # union <= 0 is handled below, not by the quotient
        while len(kept) < max_keep and position < n:
            if suppressed[position]:  # jump to the next box still alive
                position += int(suppressed[position:].argmin())
                if suppressed[position]:
                    break
            kept.append(position)
            x1, x2 = left[position], right[position]
            margin = 1e-4 * (abs(x1) + abs(x2)) + 1e-3
            if loose > 0.0:
                width = max(x2 - x1, 0.0)
                lo = bisect_left(x_first, x1 + loose * width - width / loose - margin)
                hi = bisect_right(x_first, x2 - loose * width + margin)
            else:
                lo = bisect_left(x_first, x1 - reach - margin)
                hi = bisect_right(x_first, x2 + margin)
            if hi > lo:
                # Rows w and h at once: max(min(x2) - max(x1), 0), likewise for y.
                wh = np.minimum(box_ends[position], ends[:, lo:hi])
                wh -= np.maximum(box_starts[position], starts[:, lo:hi])
                np.maximum(wh, zero, out=wh)
                inter = wh[0] * wh[1]
                union = (area[position] + areas[lo:hi]) - inter
                positive = union > zero
                over = inter / union > threshold
                over &= positive
                if threshold < zero:  # the contract's IoU is 0 where union <= 0
                    over |= ~positive
                suppressed[by_x[lo:hi][over]] = True
            position += 1
    return np.asarray(kept, dtype=np.int64)
