"""Comparing two ``acfd predict`` output folders (imported by the video tests)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()]


def same_outputs(got: Path, want: Path) -> None:
    """detections.jsonl, tracks.json, summary.json equal (the --out path aside), the same crops
    pixel for pixel, and annotated videos of the same length."""
    for name in ("detections.jsonl", "tracks.json", "summary.json"):
        if (want / name).exists() or (got / name).exists():
            a = (got / name).read_text().replace(str(got), "OUT")
            b = (want / name).read_text().replace(str(want), "OUT")
            assert a == b, f"{name} differs"
    crops = sorted(p.relative_to(want) for p in want.rglob("crops/**/*.png"))
    assert crops == sorted(p.relative_to(got) for p in got.rglob("crops/**/*.png"))
    for crop in crops:
        assert np.array_equal(cv2.imread(str(want / crop)), cv2.imread(str(got / crop))), crop
    for video in sorted(want.rglob("*.annotated.mp4")):
        assert frame_count(got / video.relative_to(want)) == frame_count(video), video.name


def frame_count(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.grab():
        count += 1
    capture.release()
    return count
