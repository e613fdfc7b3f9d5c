"""Tracking quality against known identities, with ``motmetrics`` (py-motmetrics): IDF1, MOTA, id switches.

``score_clips(clips)``: ``clips`` is a list of ``(truth, hypotheses)`` pairs, one per video, each a
list per frame of ``(id, (x1, y1, x2, y2))``. A hypothesis matches a true face at IoU >= 0.5 (the
MOTChallenge rule; motmetrics' distance ``1 - IoU`` below 0.5). Returns the totals over all clips
(motmetrics' "OVERALL" row): ``idf1``, ``mota``, ``id_switches``, ``fragmentations``, ``precision``,
``recall``, ``false_positives``, ``misses``, ``faces`` (true boxes) and ``identities``.

``motmetrics`` comes with the ``dev`` extra (``pip install 'acfd[dev]'``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Frames = Sequence[Sequence[tuple[int, Sequence[float]]]]


def _xywh(boxes: list[Sequence[float]]) -> np.ndarray:
    array = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.hstack([array[:, :2], array[:, 2:] - array[:, :2]])


def score_clips(clips: Sequence[tuple[Frames, Frames]], iou_threshold: float = 0.5) -> dict:
    try:
        import motmetrics as mm
    except ImportError as err:
        raise ImportError("scoring tracks needs motmetrics: pip install 'acfd[dev]'") from err
    accumulators, names = [], []
    for k, (truth, hypotheses) in enumerate(clips):
        if len(truth) != len(hypotheses):
            raise ValueError(f"clip {k}: {len(truth)} frames of truth against {len(hypotheses)} of hypotheses")
        acc = mm.MOTAccumulator(auto_id=True)
        for true_faces, found in zip(truth, hypotheses):
            distances = mm.distances.iou_matrix(
                _xywh([b for _, b in true_faces]), _xywh([b for _, b in found]), max_iou=1.0 - iou_threshold
            )
            acc.update([i for i, _ in true_faces], [i for i, _ in found], distances)
        accumulators.append(acc)
        names.append(f"clip{k}")
    metrics = ["idf1", "mota", "num_switches", "num_fragmentations", "precision", "recall",
               "num_false_positives", "num_misses", "num_objects", "num_unique_objects"]  # fmt: skip
    table = mm.metrics.create().compute_many(accumulators, metrics=metrics, names=names, generate_overall=True)
    row = table.loc["OVERALL"]
    return {
        "idf1": float(row["idf1"]),
        "mota": float(row["mota"]),
        "id_switches": int(row["num_switches"]),
        "fragmentations": int(row["num_fragmentations"]),
        "precision": float(row["precision"]),
        "recall": float(row["recall"]),
        "false_positives": int(row["num_false_positives"]),
        "misses": int(row["num_misses"]),
        "faces": int(row["num_objects"]),
        "identities": int(row["num_unique_objects"]),
    }
