"""What the served detector answers, as Python values, and how to draw it.

Contract:

* ``Detection(box=(x1, y1, x2, y2), score)``: one face, box corners in the original image's pixels
  (the ensemble maps boxes back from its test scales), ``score`` in ``[0, 1]``.
* ``detections_from_arrays(boxes [N, 4], scores [N], min_score)`` turns the ensemble's ``BOXES`` and
  ``SCORES`` outputs into a list sorted by falling score, dropping scores below ``min_score``.
  Arrays of the wrong shape raise ``ValueError`` (a server that answers something else).
* ``draw_detections(image_rgb, detections)`` returns an annotated copy (boxes and scores drawn);
  ``save_annotated(path, image_rgb, detections)`` writes it (format from the suffix, PNG advised).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

BOX_COLOR = (255, 64, 160)  # RGB: a magenta that stands out on cartoon palettes
TEXT_COLOR = (255, 255, 255)


@dataclass(frozen=True)
class Detection:
    """One detected face: ``box`` is ``(x1, y1, x2, y2)`` in original pixels, ``score`` in [0, 1]."""

    box: tuple[float, float, float, float]
    score: float

    def to_dict(self, digits: int = 2) -> dict:
        return {"box": [round(v, digits) for v in self.box], "score": round(self.score, 4)}


def detections_from_arrays(boxes: np.ndarray, scores: np.ndarray, min_score: float = 0.0) -> list[Detection]:
    """``BOXES [N, 4]`` and ``SCORES [N]`` (any leading batch axis of 1 is dropped) to detections."""
    boxes = np.asarray(boxes, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32)
    if boxes.ndim == 3 and boxes.shape[0] == 1:
        boxes = boxes[0]
    if scores.ndim == 2 and scores.shape[0] == 1:
        scores = scores[0]
    if boxes.size == 0 and scores.size == 0:
        return []
    if boxes.ndim != 2 or boxes.shape[1] != 4 or scores.ndim != 1 or scores.shape[0] != boxes.shape[0]:
        raise ValueError(f"expected BOXES [N, 4] and SCORES [N], got {list(boxes.shape)} and {list(scores.shape)}")
    keep = np.flatnonzero(scores >= min_score)
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    return [Detection(box=tuple(float(v) for v in boxes[i]), score=float(scores[i])) for i in keep]


def draw_detections(
    image_rgb: np.ndarray, detections: Sequence[Detection], color: tuple[int, int, int] = BOX_COLOR
) -> np.ndarray:
    """An RGB copy of ``image_rgb`` with each box outlined and its score written above it."""
    canvas = np.ascontiguousarray(image_rgb.copy())
    height, width = canvas.shape[:2]
    thickness = max(1, round(min(height, width) / 300))
    font_scale = max(0.35, min(height, width) / 1200)
    for det in detections:
        x1, y1, x2, y2 = (int(round(v)) for v in det.box)
        x1, x2 = (min(max(v, 0), width - 1) for v in (x1, x2))  # a box reaching the border stays visible
        y1, y2 = (min(max(v, 0), height - 1) for v in (y1, y2))
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness)
        label = f"{det.score:.2f}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        top = y1 - th - base - 2 if y1 - th - base - 2 >= 0 else y1  # inside the box at the top edge
        left = min(max(x1, 0), max(width - tw - 2, 0))
        cv2.rectangle(canvas, (left, top), (left + tw + 2, top + th + base + 2), color, -1)
        cv2.putText(
            canvas, label, (left + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale, TEXT_COLOR, 1, cv2.LINE_AA
        )
    return canvas


def save_annotated(path: str | Path, image_rgb: np.ndarray, detections: Sequence[Detection]) -> Path:
    """Draw ``detections`` on ``image_rgb`` and write the result to ``path`` (folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    annotated = draw_detections(image_rgb, detections)
    if not cv2.imwrite(str(path), cv2.cvtColor(annotated, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: cannot write the annotated image (unknown suffix or unwritable folder)")
    return path
