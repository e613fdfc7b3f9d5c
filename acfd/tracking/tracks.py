"""Track ids users see, and what ``tracks.json`` says about each track.

``TrackBook(tracker, frame_rate)`` follows one video: ``update(boxes, scores, cut)`` returns, per
detection, its track id or ``None`` (the tracker did not put it on a track). Ids are 1, 2, 3, ... in
the order tracks first appear in that video. A cut (``cut=True``, see ``acfd.tracking.cuts``) ends
every track: the tracker is reset and the next faces get new ids, and ``shot`` counts the cuts.

``summarize_tracks(records)`` reads the per-frame records of ``detections.jsonl`` (``source``,
``frame``, ``time_s``, ``shot``, ``detections: [{box, score, track}]``) and returns one dict per
track, in order of source and id: ``source, id, shot, first_frame, last_frame, first_time_s,
last_time_s, frames`` (frames it was seen on), ``mean_score``, ``best_frame``, ``best_score``,
``best_box`` (the highest-scoring sighting, the earliest on a tie: the frame its crop comes from).
Summaries are a function of the records alone, so a resumed or a Ray run that writes the same
records writes the same ``tracks.json``.

``recorded(boxes, scores)``: detections rounded as ``detections.jsonl`` stores them (boxes to 0.01
px, scores to 1e-4). Trackers are fed these values, so replaying the records of a killed run
rebuilds the tracker state the run had, exactly.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from acfd.tracking.trackers import DEFAULT_TRACKER, make_tracker


BOX_DIGITS, SCORE_DIGITS = 2, 4


def recorded(boxes: np.ndarray, scores: np.ndarray) -> tuple[list[list[float]], list[float]]:
    """Boxes and scores as plain lists, rounded as the JSON records hold them."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return (
        [[round(v, BOX_DIGITS) for v in box] for box in boxes.tolist()],
        [round(v, SCORE_DIGITS) for v in np.asarray(scores, np.float64).reshape(-1).tolist()],
    )


class TrackBook:
    """Track ids for one video's frames, fed in order."""

    def __init__(self, tracker: str = DEFAULT_TRACKER, frame_rate: float = 30.0):
        self._tracker = make_tracker(tracker, frame_rate)
        self._ids: dict[int, int] = {}  # the library's id (this shot) -> the id users see
        self.shot = 0
        self.next_id = 1

    def update(self, boxes: np.ndarray, scores: np.ndarray, cut: bool = False) -> list[int | None]:
        if cut:
            self._tracker.reset()
            self._ids.clear()
            self.shot += 1
        raw = self._tracker.update(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32))
        out: list[int | None] = []
        for key in raw.tolist():
            if key < 0:
                out.append(None)
                continue
            if key not in self._ids:
                self._ids[key] = self.next_id
                self.next_id += 1
            out.append(self._ids[key])
        return out


def summarize_tracks(records: Iterable[dict]) -> list[dict]:
    """One summary per ``(source, track id)`` in the records; see the module docstring."""
    tracks: dict[tuple[str, int], dict] = {}
    for record in records:
        for det in record["detections"]:
            track = det.get("track")
            if track is None:
                continue
            key = (record["source"], track)
            score = float(det["score"])
            t = tracks.get(key)
            if t is None:
                tracks[key] = t = {
                    "source": record["source"],
                    "id": track,
                    "shot": record.get("shot"),
                    "first_frame": record["frame"],
                    "first_time_s": record["time_s"],
                    "score_sum": 0.0,
                    "frames": 0,
                    "best_score": -1.0,
                }
            t["last_frame"], t["last_time_s"] = record["frame"], record["time_s"]
            t["frames"] += 1
            t["score_sum"] += score
            if score > t["best_score"]:
                t["best_score"], t["best_frame"], t["best_box"] = score, record["frame"], list(det["box"])
    order = {}
    for source, _ in tracks:
        order.setdefault(source, len(order))
    out = []
    for key in sorted(tracks, key=lambda k: (order[k[0]], k[1])):
        t = tracks[key]
        out.append(
            {
                "source": t["source"],
                "id": t["id"],
                "shot": t["shot"],
                "first_frame": t["first_frame"],
                "last_frame": t["last_frame"],
                "first_time_s": t["first_time_s"],
                "last_time_s": t["last_time_s"],
                "frames": t["frames"],
                "mean_score": round(t["score_sum"] / t["frames"], 4),
                "best_frame": t["best_frame"],
                "best_score": t["best_score"],
                "best_box": t["best_box"],
            }
        )
    return out
