"""``acfd predict``: cartoon faces in images, folders and videos, in this process (no server).

    acfd predict SOURCES... [--weights CKPT | --export DIR] [--engine E] [--backend engine|torch]
                 [--out DIR] [--json] [--save-crops] [--min-score S] [--every N] [--start F] [--end F]

Contract:

* SOURCES are image files, folders (searched recursively for images and videos) and video files
  (``.mp4 .avi .mov .mkv .webm .m4v .mpg``; read with OpenCV). Of a video, frames ``--start`` (first
  index, 0) to ``--end`` (exclusive; default: the last) are read and every ``--every``-th of them
  detected.
* The model is the embedded default unless ``--weights`` / ``--export`` name another; it runs as
  ``acfd.detector.Detector`` does (the serving engine by default, ``--backend torch`` for PyTorch).
* Written into ``--out`` (default ``predict/``): each image's annotated copy as PNG (a folder's
  inner layout kept), each video's annotated frames as ``NAME.annotated.mp4``, with ``--save-crops``
  every face as ``crops/NAME[_fFRAME]_K.png``, ``detections.jsonl`` (one JSON object per image or
  frame: ``source, frame, time_s, width, height, faces, detections: [{box, score}]``; ``frame`` and
  ``time_s`` are null for images), and ``summary.json``. ``--json`` also prints the JSON lines on
  stdout (the summary then goes to stderr).
* A progress bar on stderr; a summary line: images, video frames, faces, and images or frames per
  second overall (reading, detecting, drawing and writing) and while detecting.
* Unreadable, undecodable or missing inputs are reported one line each and skipped; exit 1 when any
  was, 2 when nothing could be read or the model cannot be loaded, 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from acfd.inference.image_io import IMAGE_SUFFIXES

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg")


@dataclass(frozen=True)
class Source:
    path: Path
    out_name: str  # path under --out, without suffix
    video: bool


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sources", nargs="+", metavar="SOURCE", help="image files, folders, video files")
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--weights", type=Path, default=None, help="checkpoint (default: the embedded model)")
    model.add_argument("--export", type=Path, default=None, help="an `acfd export` folder instead of a checkpoint")
    parser.add_argument("--engine", default=None, help="CPU engine (default: the serving default, openvino-int8)")
    parser.add_argument(
        "--backend", choices=("engine", "torch"), default="engine", help="exported graph in a CPU engine, or PyTorch"
    )
    parser.add_argument("--device", default="cpu", help="torch device for --backend torch (cpu, cuda)")
    parser.add_argument("--out", type=Path, default=Path("predict"), help="output folder")
    parser.add_argument("--json", action="store_true", help="also print one JSON line per image or frame on stdout")
    parser.add_argument("--save-crops", action="store_true", help="write every detected face as a PNG crop")
    parser.add_argument(
        "--min-score", type=float, default=None, metavar="S", help="default: the model's display threshold"
    )
    parser.add_argument("--every", type=int, default=1, metavar="N", help="detect every N-th video frame")
    parser.add_argument("--start", type=int, default=0, metavar="F", help="first video frame (index)")
    parser.add_argument(
        "--end", type=int, default=None, metavar="F", help="video frame to stop before (default: the last)"
    )
    parser.add_argument(
        "--no-annotate", action="store_true", help="write JSON lines only, no annotated images or videos"
    )


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


def video_frames(path: Path, start: int, end: int | None, every: int) -> Iterator[tuple[int, float, np.ndarray]]:
    """``(frame index, time in seconds, RGB frame)`` of the frames to detect; ``OSError`` if unreadable."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise OSError(f"{path}: OpenCV cannot open it as a video")
    try:
        fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
        if start > 0:
            capture.set(cv2.CAP_PROP_POS_FRAMES, start)
        index, yielded = start, 0
        while end is None or index < end:
            ok, frame = capture.read()
            if not ok:
                break
            if (index - start) % every == 0:
                yielded += 1
                yield index, (index / fps if fps > 0 else float("nan")), cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            index += 1
        if yielded == 0 and index == start:
            raise OSError(f"{path}: no frames could be read (empty, corrupt, or --start beyond its end)")
    finally:
        capture.release()


def video_fps(path: Path) -> float:
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        return float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        capture.release()


class Writer:
    """Everything ``acfd predict`` writes: annotated images and videos, crops, JSON lines."""

    def __init__(self, args: argparse.Namespace):
        self.out, self.args = args.out, args
        self.out.mkdir(parents=True, exist_ok=True)
        self.lines = (self.out / "detections.jsonl").open("w")
        self.video = None

    def record(self, source: Source, prediction, rgb: np.ndarray, frame: int | None, time_s: float | None) -> None:
        from acfd.clients.detections import draw_detections, save_annotated

        known_time = time_s is not None and time_s == time_s  # NaN: the video has no frame rate
        line = {
            "source": str(source.path),
            "frame": frame,
            "time_s": round(time_s, 4) if known_time else None,
            "width": prediction.image_size[0],
            "height": prediction.image_size[1],
            "faces": len(prediction),
            "detections": [d.to_dict() for d in prediction],
        }
        text = json.dumps(line)
        self.lines.write(text + "\n")
        if self.args.json:
            print(text, flush=True)
        if self.args.save_crops:
            self._crops(source, prediction, rgb, frame)
        if self.args.no_annotate:
            return
        if frame is None:
            save_annotated(self.out / f"{source.out_name}.png", rgb, list(prediction))
        else:
            self._video_frame(draw_detections(rgb, list(prediction)))

    def _crops(self, source: Source, prediction, rgb: np.ndarray, frame: int | None) -> None:
        import cv2

        height, width = rgb.shape[:2]
        stem = source.out_name + (f"_f{frame:06d}" if frame is not None else "")
        for k, (x1, y1, x2, y2) in enumerate(prediction.boxes.tolist()):
            x1, y1 = max(int(np.floor(x1)), 0), max(int(np.floor(y1)), 0)
            x2, y2 = min(int(np.ceil(x2)), width), min(int(np.ceil(y2)), height)
            if x2 > x1 and y2 > y1:
                path = self.out / "crops" / f"{stem}_{k}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(path), cv2.cvtColor(rgb[y1:y2, x1:x2], cv2.COLOR_RGB2BGR))

    def start_video(self, source: Source, fps: float) -> None:
        self.video_path = self.out / f"{source.out_name}.annotated.mp4"
        self.video_path.parent.mkdir(parents=True, exist_ok=True)
        self.video_fps = fps if fps > 0 else 25.0
        self.video = None

    def _video_frame(self, annotated: np.ndarray) -> None:
        import cv2

        if self.video is None:
            height, width = annotated.shape[:2]
            self.video = cv2.VideoWriter(
                str(self.video_path), cv2.VideoWriter_fourcc(*"mp4v"), self.video_fps, (width, height)
            )
            if not self.video.isOpened():
                raise OSError(f"{self.video_path}: OpenCV cannot write an mp4 video here")
        self.video.write(cv2.cvtColor(annotated, cv2.COLOR_RGB2BGR))

    def end_video(self) -> None:
        if self.video is not None:
            self.video.release()
            self.video = None

    def close(self) -> None:
        self.end_video()
        self.lines.close()


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    if args.every < 1 or args.start < 0 or (args.end is not None and args.end <= args.start):
        return _fail("--every must be >= 1, --start >= 0 and --end > --start", 2)
    if args.min_score is not None and not 0.0 <= args.min_score <= 1.0:
        return _fail(f"--min-score {args.min_score}: must be between 0 and 1", 2)
    sources, errors = find_sources(args.sources)
    for line in errors:
        print(f"acfd predict: {line}", file=sys.stderr)
    if not sources:
        return _fail("nothing to detect", 2)
    try:
        from acfd.detector import Detector

        detector = Detector(args.export or args.weights, engine=args.engine, backend=args.backend,
                            device=args.device, min_score=args.min_score)  # fmt: skip
    except (ValueError, OSError, RuntimeError) as err:
        return _fail(f"cannot load the model: {' '.join(str(err).split())}", 2)
    print(f"acfd predict: {detector}", file=sys.stderr)
    from acfd.inference.image_io import read_image

    writer = Writer(args)
    counts = {"images": 0, "frames": 0, "faces": 0}
    failed = len(errors)
    detect_s = 0.0
    started = time.perf_counter()

    def detect(source: Source, rgb: np.ndarray, frame: int | None, time_s: float | None) -> None:
        nonlocal detect_s
        begin = time.perf_counter()
        prediction = detector(rgb)
        detect_s += time.perf_counter() - begin
        writer.record(source, prediction, rgb, frame, time_s)
        counts["frames" if frame is not None else "images"] += 1
        counts["faces"] += len(prediction)

    progress = tqdm(total=len(sources), unit="file", desc="predict", disable=None, file=sys.stderr)
    try:
        for source in sources:
            try:
                if source.video:
                    writer.start_video(source, video_fps(source.path))
                    for frame, time_s, rgb in video_frames(source.path, args.start, args.end, args.every):
                        detect(source, rgb, frame, time_s)
                        progress.set_postfix_str(f"{source.path.name} frame {frame}")
                    writer.end_video()
                else:
                    detect(source, read_image(source.path), None, None)
            except (ValueError, OSError) as err:  # ImageError is a ValueError
                writer.end_video()
                failed += 1
                progress.write(f"acfd predict: {' '.join(str(err).split())}", file=sys.stderr)
            progress.update(1)
    finally:
        progress.close()
        writer.close()
    images, frames, faces = counts["images"], counts["frames"], counts["faces"]
    done = images + frames
    wall_s = time.perf_counter() - started
    fps = done / detect_s if detect_s > 0 else 0.0
    overall = done / wall_s if wall_s > 0 else 0.0
    summary = {"images": images, "video_frames": frames, "faces": faces, "failed": failed,
               "per_s_detecting": round(fps, 2), "per_s_overall": round(overall, 2), "seconds": round(wall_s, 2),
               "min_score": detector.min_score, "model": repr(detector), "out": str(args.out)}  # fmt: skip
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    line = (f"acfd predict: {images} images, {frames} video frames, {faces} faces (score >= {detector.min_score:g}), "
            f"{overall:.1f} per second overall ({fps:.1f} detecting)" + (f", {failed} inputs failed" if failed else "")
            + f"; results in {args.out}")  # fmt: skip
    print(line, file=sys.stderr if args.json else sys.stdout)
    if done == 0:
        return 2
    return 1 if failed else 0


def _fail(message: str, code: int) -> int:
    print(f"acfd predict: {message}", file=sys.stderr)
    return code
