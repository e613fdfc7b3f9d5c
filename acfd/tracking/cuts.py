"""Scene cuts from colour histograms of consecutive frames: ``CutDetector``.

A cut ends every track (a face after a cut is a new track, even if the same character is back).

How: each decoded frame is shrunk to at most 64 px on its longer side (``INTER_AREA``), turned to
HSV, and described by a 2-D hue x saturation histogram (16 x 8 bins, plus 8 bins of value, L1
normalised). Two consecutive frames whose histograms are farther apart than ``threshold`` in
Bhattacharyya distance (0 = same colours, 1 = disjoint) are a cut. It costs about 0.1 ms a frame,
sees hard cuts (a new background, new palette), and does not see gradual transitions (fades and
dissolves spread the change over many frames) nor a cut between two shots of the same palette.

``CutDetector.feed(rgb) -> bool``: True when this frame starts a new shot (never the first frame
fed). ``threshold >= 1`` turns detection off.
"""

from __future__ import annotations

import cv2
import numpy as np

DEFAULT_CUT_THRESHOLD = 0.45
SIDE = 64


def frame_signature(rgb: np.ndarray) -> np.ndarray:
    """The float32 colour histogram of an RGB frame that cuts are measured on."""
    height, width = rgb.shape[:2]
    scale = SIDE / max(height, width)
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2HSV)
    hue_sat = cv2.calcHist([hsv], [0, 1], None, [16, 8], [0, 180, 0, 256]).ravel()
    value = cv2.calcHist([hsv], [2], None, [8], [0, 256]).ravel()
    signature = np.concatenate([hue_sat, value]).astype(np.float32)
    return signature / max(float(signature.sum()), 1.0)


def signature_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya distance of two signatures, in [0, 1]."""
    return float(cv2.compareHist(a, b, cv2.HISTCMP_BHATTACHARYYA))


class CutDetector:
    """Feed every decoded frame in order; ``feed`` says whether a new shot starts at it."""

    def __init__(self, threshold: float = DEFAULT_CUT_THRESHOLD):
        if not threshold > 0.0:
            raise ValueError(f"cut threshold {threshold}: must be above 0 (1 or more turns cuts off)")
        self.threshold = float(threshold)
        self._previous: np.ndarray | None = None

    @property
    def enabled(self) -> bool:
        return self.threshold < 1.0

    def feed(self, rgb: np.ndarray) -> bool:
        if not self.enabled:
            return False
        signature = frame_signature(rgb)
        previous, self._previous = self._previous, signature
        return previous is not None and signature_distance(previous, signature) > self.threshold

    def reset(self) -> None:
        self._previous = None
