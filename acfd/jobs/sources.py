"""What ``acfd predict`` reads: the inputs its arguments name, and video frames with scene cuts.

* ``find_sources(arguments)``: image files, folders (searched recursively, sorted) and video files
  (``VIDEO_SUFFIXES``), and one error line per argument that names nothing.
* ``probe_video(path)``: frame rate and frame count of a video, ``OSError`` if OpenCV cannot open it.
* ``read_video(path, first, stop, every, origin=...)``: the frames to detect, ``VideoFrame(index,
  time_s, rgb, cut)``. Frames are sampled on the grid ``origin, origin + every, ...`` (``origin`` is
  ``--start``); reading may begin at any grid frame ``first`` (a resumed job, a Ray chunk) and gives
  the same frames and the same ``cut`` flags as reading from ``origin``: it starts ``every`` frames
  early so that the cut detector sees the frame pairs a full read would. ``cut`` is True when a scene
  cut lies between the previous sampled frame and this one (``acfd.tracking.cuts``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from acfd.inference.image_io import IMAGE_SUFFIXES
from acfd.tracking.cuts import DEFAULT_CUT_THRESHOLD, CutDetector

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg")


@dataclass(frozen=True)
class Source:
    path: Path
    out_name: str  # path under --out, without suffix
    video: bool


@dataclass(frozen=True)
class VideoFrame:
    index: int
    time_s: float  # NaN when the video has no frame rate
    rgb: np.ndarray
    cut: bool


def find_sources(arguments: list[str]) -> tuple[list[Source], list[str]]:
    """The inputs the arguments name, and one error line per argument that names none."""
    sources, errors = [], []
    for text in arguments:
        path = Path(text)
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES
            )
            if not found:
                errors.append(f"{path}: no images or videos in the folder")
            for item in found:
                name = str(Path(path.name) / item.relative_to(path).with_suffix(""))
                sources.append(Source(item, name, item.suffix.lower() in VIDEO_SUFFIXES))
        elif path.is_file():
            sources.append(Source(path, path.stem, path.suffix.lower() in VIDEO_SUFFIXES))
        else:
            errors.append(f"{path}: no such file or folder")
    return sources, errors


def probe_video(path: Path) -> tuple[float, int]:
    """``(frames per second, frame count)`` as the container states them (0 where unknown)."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise OSError(f"{path}: OpenCV cannot open it as a video")
        return float(capture.get(cv2.CAP_PROP_FPS) or 0.0), max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0)
    finally:
        capture.release()


def _seek(capture, index: int) -> bool:
    """Put ``capture`` before frame ``index``: OpenCV's seek, and where the position it reports is
    not ``index`` (some codecs; or the video is shorter), a read from the first frame that skips
    ``index`` frames. False when the video ends first."""
    import cv2

    capture.set(cv2.CAP_PROP_POS_FRAMES, index)
    if int(capture.get(cv2.CAP_PROP_POS_FRAMES)) == index:
        return True
    if index >= int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0) > 0:
        return False  # past the end the container states: no read through the whole video to learn it
    capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
    return all(capture.grab() for _ in range(index))


def no_frames_message(path: Path) -> str:
    return f"{path}: no frames could be read (empty, corrupt, or --start beyond its end)"


def read_video(
    path: Path,
    first: int,
    stop: int | None,
    every: int,
    *,
    origin: int | None = None,
    cut_threshold: float = DEFAULT_CUT_THRESHOLD,
    required: bool = True,
) -> Iterator[VideoFrame]:
    """The sampled frames in ``[first, stop)``; see the module docstring. ``OSError`` if the video
    cannot be opened, or (``required``) if not a single frame could be read from ``first`` on."""
    import cv2

    origin = first if origin is None else origin
    if first < origin or (first - origin) % every:
        raise ValueError(f"frame {first} is not on the sampling grid {origin} + k * {every}")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise OSError(f"{path}: OpenCV cannot open it as a video")
    cuts = CutDetector(cut_threshold) if cut_threshold < 1.0 else None
    try:
        fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
        index = first - every if first > origin else first  # one sampling step early: the cut detector's lead-in
        reachable = index == 0 or _seek(capture, index)  # not: the video ends before frame ``index``
        pending, read = False, 0
        while reachable and (stop is None or index < stop):
            sampled = index >= first and (index - origin) % every == 0
            if cuts is None and not sampled:
                if not capture.grab():
                    break
                index += 1
                continue
            ok, bgr = capture.read()
            if not ok:
                break
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            if cuts is not None:
                pending = cuts.feed(rgb) or pending
            if index >= first:
                read += 1
            if (index - origin) % every == 0:
                if sampled:
                    yield VideoFrame(index, index / fps if fps > 0 else float("nan"), rgb, pending and index > origin)
                pending = False
            index += 1
        if required and read == 0:
            raise OSError(no_frames_message(path))
    finally:
        capture.release()
