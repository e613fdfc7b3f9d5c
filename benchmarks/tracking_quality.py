"""Trackers scored on generated cartoon videos with known identities: IDF1, MOTA, id switches, frames/s.

    .venv/bin/python benchmarks/tracking_quality.py [--clips 8] [--frames 96] [--size 480x270] [--seed 7]
                                                    [--weights CKPT | --export DIR] [--json OUT]

Each clip (``acfd.scenes.clips``: faces moving, crossing and hiding one another, a face leaving and
re-entering, poles in front, a cut between two shots) is written as an MP4 and read back as
``acfd predict`` reads it; the detector (the embedded model unless told) runs once per frame at
``min_score`` 0 and its detections are cached. Every tracker then follows the same detections
through ``acfd.tracking.tracks.TrackBook`` with the same cut detector, at the detector's display
threshold (what ``acfd predict --track`` feeds it) and, for ByteTrack, also at 0.2 (its second
association round works on the weak detections). Scores are motmetrics' over all clips. Frames/s:
"tracking" is the tracker alone on cached detections, "with detection" adds the measured detector
time per frame (one process, the default engine).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def detect_clips(detector, clips, folder: Path) -> tuple[list[list[tuple[np.ndarray, np.ndarray, bool]]], float]:
    """Per clip, per frame ``(boxes, scores, cut)`` of every detection; and detector seconds per frame."""
    from acfd.jobs.sources import read_video
    from acfd.scenes.clips import write_clip

    out, seconds, count = [], 0.0, 0
    for k, clip in enumerate(clips):
        path = write_clip(folder / f"clip{k}.mp4", clip)
        frames = []
        for frame in read_video(path, 0, None, 1, cut_threshold=0.45):
            start = time.perf_counter()
            prediction = detector(frame.rgb, min_score=0.0)
            seconds += time.perf_counter() - start
            count += 1
            frames.append((prediction.boxes, prediction.scores, frame.cut))
        if len(frames) != len(clip.frames):
            raise RuntimeError(f"clip {k}: read {len(frames)} of {len(clip.frames)} frames back")
        out.append(frames)
    return out, seconds / max(count, 1)


def track_clips(name: str, detections, min_score: float, fps: float) -> tuple[list, float]:
    from acfd.tracking.tracks import TrackBook

    hypotheses, seconds, count = [], 0.0, 0
    for frames in detections:
        book = TrackBook(name, fps)
        found = []
        for boxes, scores, cut in frames:
            keep = scores >= min_score
            start = time.perf_counter()
            ids = book.update(boxes[keep], scores[keep], cut)
            seconds += time.perf_counter() - start
            count += 1
            found.append([(i, tuple(b)) for i, b in zip(ids, boxes[keep].tolist()) if i is not None])
        hypotheses.append(found)
    return hypotheses, count / max(seconds, 1e-9)


def main(argv: list[str] | None = None) -> int:
    import tempfile

    from acfd import Detector
    from acfd.scenes.clips import generate_clip
    from acfd.tracking.mot_metrics import score_clips

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--frames", type=int, default=96, help="frames per clip (two shots)")
    parser.add_argument("--size", default="480x270")
    parser.add_argument("--seed", type=int, default=7)
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--weights", type=Path, default=None)
    model.add_argument("--export", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=0, help="detector threads, 0 = every core")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))

    fps = 24.0
    clips = [generate_clip(np.random.default_rng((args.seed, k)), width, height, args.frames, 2, fps)
             for k in range(args.clips)]  # fmt: skip
    detector = Detector(args.export or args.weights, threads=args.threads)
    print(f"{detector}; {args.clips} clips x {args.frames} frames at {width}x{height}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        detections, detect_s = detect_clips(detector, clips, Path(tmp))
    truth = [clip.truth for clip in clips]
    variants = [("bytetrack", detector.display_threshold), ("bytetrack", 0.2), ("norfair", detector.display_threshold),
                ("iou", detector.display_threshold)]  # fmt: skip
    rows = []
    for name, min_score in variants:
        hypotheses, track_fps = track_clips(name, detections, min_score, fps)
        scores = score_clips(list(zip(truth, hypotheses)))
        with_detection = 1.0 / (detect_s + 1.0 / track_fps)
        rows.append({"tracker": name, "min_score": round(min_score, 3), **scores,
                     "tracking_fps": round(track_fps, 1), "fps_with_detection": round(with_detection, 1)})  # fmt: skip
    faces = rows[0]["faces"]
    print(f"\n{args.clips} clips, {sum(len(c.frames) for c in clips)} frames, {faces} true faces, "
          f"{rows[0]['identities']} identities; detector {1.0 / detect_s:.1f} frames/s\n")  # fmt: skip
    header = ("tracker", "min score", "IDF1", "MOTA", "id switches", "frag.", "recall", "precision",
              "tracking frames/s", "frames/s with detection")  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['tracker']} | {r['min_score']:g} | {r['idf1']:.3f} | {r['mota']:.3f} | {r['id_switches']} | "
              f"{r['fragmentations']} | {r['recall']:.3f} | {r['precision']:.3f} | {r['tracking_fps']:.0f} | "
              f"{r['fps_with_detection']:.1f} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"detector": repr(detector), "detector_fps": 1.0 / detect_s, "rows": rows},
                                        indent=2) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
