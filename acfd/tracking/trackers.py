"""Frame-to-frame trackers behind one small interface: ``make_tracker(name, frame_rate)``.

Each tracker takes one frame's detections (``boxes [N, 4]`` x1, y1, x2, y2 in pixels and
``scores [N]``) and returns, per detection, the id of the track it joins, or -1 when the tracker
does not (yet) put it on a track. Ids are the library's own, unique until ``reset()``, which forgets
every track (a scene cut; ByteTrack then counts from 1 again). ``acfd.tracking.tracks.TrackBook`` turns
them into the numbering users see.

* ``bytetrack``: ByteTrack (Zhang et al. 2022) from ``supervision`` (``sv.ByteTrack``): a Kalman
  filter per track, IoU association in two rounds (confident detections first, then the weak ones
  against the tracks still unmatched), lost tracks kept ``lost_track_buffer`` frames at 30 fps.
  The default: best IDF1 on the generated videos (``benchmarks/tracking_quality.py``).
* ``norfair``: Norfair's ``Tracker`` with IoU distance and its Kalman filter; a track gets an id
  after ``initialization_delay`` hits and lives ``hit_counter_max`` frames without one.
* ``iou``: the plain baseline, written here: each frame's detections are matched to the previous
  frame's boxes by IoU (Hungarian assignment, IoU >= 0.3); unmatched detections start tracks,
  unmatched tracks end at once.

``supervision`` and ``norfair`` come with ``pip install 'acfd[track]'`` (the baseline needs only the
``scipy`` they bring); a missing one is a ``MissingTrackerError`` saying so in one line.
"""

from __future__ import annotations

import warnings
from typing import Protocol

import numpy as np

TRACKERS = ("bytetrack", "norfair", "iou")
DEFAULT_TRACKER = "bytetrack"


class FrameTracker(Protocol):
    name: str

    def update(self, boxes: np.ndarray, scores: np.ndarray) -> np.ndarray: ...

    def reset(self) -> None: ...


class MissingTrackerError(ValueError):
    """The library of the chosen tracker is not installed (one line saying what to install)."""


def make_tracker(name: str = DEFAULT_TRACKER, frame_rate: float = 30.0) -> FrameTracker:
    """A fresh tracker; ``frame_rate``: frames per second of the frames it is fed (after ``--every``)."""
    if name not in TRACKERS:
        raise ValueError(f"tracker {name!r}: choose one of {list(TRACKERS)}")
    frame_rate = frame_rate if frame_rate > 0 else 30.0
    if name == "bytetrack":
        return ByteTrackTracker(frame_rate)
    if name == "norfair":
        return NorfairTracker(frame_rate)
    return IouTracker()


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix ``[len(a), len(b)]`` of two box arrays (x1, y1, x2, y2)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0.0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0.0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0.0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


class ByteTrackTracker:
    name = "bytetrack"

    def __init__(self, frame_rate: float, lost_track_buffer: int = 30, activation: float = 0.25):
        try:
            import supervision as sv
        except ImportError as err:
            raise MissingTrackerError(
                "tracker 'bytetrack' needs supervision: pip install 'supervision==0.30.9'"
            ) from err
        self._sv = sv
        with warnings.catch_warnings():
            # sv.ByteTrack is deprecated in favour of Roboflow's `trackers` package, which needs
            # numpy >= 2 (this project pins numpy < 2 for its serving stack); 0.30.x keeps it.
            warnings.simplefilter("ignore")
            self._tracker = sv.ByteTrack(
                track_activation_threshold=activation,
                lost_track_buffer=lost_track_buffer,
                minimum_matching_threshold=0.8,
                frame_rate=frame_rate,
            )

    def update(self, boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
        n = len(scores)
        ids = np.full(n, -1, np.int64)
        detections = self._sv.Detections(
            xyxy=np.asarray(boxes, np.float32).reshape(-1, 4),
            confidence=np.asarray(scores, np.float32).reshape(-1),
            class_id=np.zeros(n, int),
            data={"index": np.arange(n)},
        )
        tracked = self._tracker.update_with_detections(detections)
        if len(tracked):
            ids[np.asarray(tracked.data["index"], int)] = np.asarray(tracked.tracker_id, np.int64)
        return ids

    def reset(self) -> None:
        self._tracker.reset()


class NorfairTracker:
    name = "norfair"

    def __init__(self, frame_rate: float, distance_threshold: float = 0.8):
        try:
            import norfair
        except ImportError as err:
            raise MissingTrackerError("tracker 'norfair' needs norfair: pip install 'acfd[track]'") from err
        self._norfair = norfair
        self._hits = max(2, round(frame_rate / 2))  # frames a track lives without a detection: half a second
        self._distance = distance_threshold
        self.reset()

    def update(self, boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
        ids = np.full(len(scores), -1, np.int64)
        detections = [
            self._norfair.Detection(np.asarray(box, np.float64).reshape(2, 2), np.full(2, float(score)), data=i)
            for i, (box, score) in enumerate(zip(np.asarray(boxes).reshape(-1, 4), np.asarray(scores).reshape(-1)))
        ]
        for obj in self._tracker.update(detections):
            if obj.last_detection is not None and any(obj.last_detection is d for d in detections):
                ids[obj.last_detection.data] = obj.id
        return ids

    def reset(self) -> None:
        self._tracker = self._norfair.Tracker(
            distance_function="iou",
            distance_threshold=self._distance,
            hit_counter_max=self._hits,
            initialization_delay=1,
        )


class IouTracker:
    """Baseline: link each detection to the previous frame's box it overlaps most (IoU >= ``min_iou``)."""

    name = "iou"

    def __init__(self, min_iou: float = 0.3):
        try:
            import scipy.optimize  # noqa: F401
        except ImportError as err:
            raise MissingTrackerError("tracker 'iou' needs scipy: pip install 'acfd[track]'") from err
        self.min_iou = min_iou
        self._next = 1
        self.reset()

    def update(self, boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
        from scipy.optimize import linear_sum_assignment

        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        ids = np.full(len(boxes), -1, np.int64)
        if len(boxes) and len(self._boxes):
            iou = box_iou(boxes, self._boxes)
            rows, cols = linear_sum_assignment(-iou)
            for r, c in zip(rows, cols):
                if iou[r, c] >= self.min_iou:
                    ids[r] = self._ids[c]
        for i in np.flatnonzero(ids < 0):
            ids[i] = self._next
            self._next += 1
        self._boxes, self._ids = boxes, ids.copy()
        return ids

    def reset(self) -> None:
        self._boxes, self._ids = np.zeros((0, 4)), np.zeros(0, np.int64)
