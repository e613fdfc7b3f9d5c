"""Tracked faces drawn on a frame: each track in its own colour, labelled ``#ID score``.

``draw_tracks(rgb, boxes, scores, ids)`` returns an annotated RGB copy; a detection the tracker did
not put on a track (id ``None``) is drawn in grey with its score only. Colours come from the track
id (golden-ratio hue steps), so a face keeps its colour for as long as it keeps its id.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import cv2
import numpy as np

UNTRACKED = (160, 160, 160)


def track_color(track: int) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb((track * 0.618034) % 1.0, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_tracks(
    rgb: np.ndarray, boxes: Sequence[Sequence[float]], scores: Sequence[float], ids: Sequence[int | None]
) -> np.ndarray:
    canvas = np.ascontiguousarray(rgb.copy())
    height, width = canvas.shape[:2]
    thickness = max(1, round(min(height, width) / 300))
    font_scale = max(0.35, min(height, width) / 1200)
    for box, score, track in zip(boxes, scores, ids):
        color = UNTRACKED if track is None else track_color(track)
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        x1, x2 = (min(max(v, 0), width - 1) for v in (x1, x2))
        y1, y2 = (min(max(v, 0), height - 1) for v in (y1, y2))
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness)
        label = f"{score:.2f}" if track is None else f"#{track} {score:.2f}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        top = y1 - th - base - 2 if y1 - th - base - 2 >= 0 else y1
        left = min(max(x1, 0), max(width - tw - 2, 0))
        cv2.rectangle(canvas, (left, top), (left + tw + 2, top + th + base + 2), color, -1)
        cv2.putText(canvas, label, (left + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1,
                    cv2.LINE_AA)  # fmt: skip
    return canvas
