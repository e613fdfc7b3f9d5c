"""``acfd predict``: cartoon faces in images, folders and videos, in this process or on a Ray cluster.

    acfd predict SOURCES... [--weights CKPT | --export DIR] [--engine E] [--backend engine|torch]
                 [--out DIR] [--json] [--save-crops] [--min-score S] [--every N] [--start F] [--end F]
                 [--track [--tracker bytetrack|norfair|iou] [--cut-threshold T]]
                 [--ray [ADDRESS] [--ray-workers N] [--chunk-frames N]]

Contract:

* SOURCES are image files, folders (searched recursively for images and videos) and video files
  (``.mp4 .avi .mov .mkv .webm .m4v .mpg``; read with OpenCV). Of a video, frames ``--start`` (first
  index, 0) to ``--end`` (exclusive; default: the last) are read and every ``--every``-th of them
  detected.
* The model is the embedded default unless ``--weights`` / ``--export`` name another; it runs as
  ``acfd.detector.Detector`` does (the serving engine by default, ``--backend torch`` for PyTorch).
* ``--track`` links faces across video frames into tracks (``acfd.tracking``: ByteTrack by default)
  and ends every track at a scene cut (colour-histogram distance of consecutive frames above
  ``--cut-threshold``; 1 turns cuts off).
* Written into ``--out`` (default ``predict/``): each image's annotated copy as PNG (a folder's
  inner layout kept), each video's annotated frames as ``NAME.annotated.mp4`` (track ids on the
  boxes under ``--track``), ``detections.jsonl`` (one JSON object per image or frame: ``source,
  frame, time_s, shot, width, height, faces, detections: [{box, score}]``, plus ``track`` per
  detection under ``--track``; ``frame``, ``time_s`` and ``shot`` are null for images),
  ``tracks.json`` under ``--track`` (per track: first and last frame and time, frames seen, mean
  score, the frame of its best crop), with ``--save-crops`` every face as
  ``crops/NAME[_fFRAME]_K.png`` (under ``--track``: one crop per track, ``crops/NAME_tID.png``),
  and ``summary.json``; ``job.json`` and ``progress.jsonl`` keep the job resumable. ``--json`` also
  prints the JSON lines on stdout (the summary then goes to stderr).
* Resumable: rerunning the same command with the same ``--out`` after the process was killed goes on
  where the committed results end (``acfd.jobs.journal``); the finished outputs equal an
  uninterrupted run's. Another model, option set or source list in the same ``--out`` is refused.
* ``--ray [ADDRESS]`` (``pip install 'acfd[cluster]'``) detects on a Ray cluster (a local one
  without ADDRESS, or the one this process is already connected to): whole images, videos in
  ``--chunk-frames`` chunks, one ``Detector`` per worker; this process writes the same outputs.
* A progress bar on stderr; a summary line: images, video frames, faces, and images or frames per
  second overall and while detecting (this session; ``timing.json`` keeps them).
* Unreadable, undecodable or missing inputs are reported one line each and skipped; exit 1 when any
  was (or a Ray chunk failed for good: rerun to resume), 2 when nothing could be read, the model
  cannot be loaded or the ``--out`` folder holds another job, 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from acfd.jobs.sources import VIDEO_SUFFIXES, Source, find_sources  # noqa: F401  (the public names)
from acfd.tracking.cuts import DEFAULT_CUT_THRESHOLD
from acfd.tracking.trackers import DEFAULT_TRACKER, TRACKERS


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
    parser.add_argument("--threads", type=int, default=0, help="detector threads in this process, 0 = every core")
    parser.add_argument("--out", type=Path, default=Path("predict"), help="output folder (a rerun resumes it)")
    parser.add_argument("--json", action="store_true", help="also print one JSON line per image or frame on stdout")
    parser.add_argument("--save-crops", action="store_true", help="write every face (one per track) as a PNG crop")
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
    parser.add_argument("--track", action="store_true", help="link faces across video frames into tracks")
    parser.add_argument("--tracker", choices=TRACKERS, default=DEFAULT_TRACKER, help="tracker for --track")
    parser.add_argument(
        "--cut-threshold", type=float, default=DEFAULT_CUT_THRESHOLD, metavar="T",
        help="scene cut: colour-histogram distance of consecutive frames above T (0..1; 1 = no cuts)",
    )  # fmt: skip
    parser.add_argument(
        "--ray", nargs="?", const="", default=None, metavar="ADDRESS",
        help="detect on a Ray cluster (host:port, ray://host:10001, auto); no ADDRESS: a local Ray",
    )  # fmt: skip
    parser.add_argument("--ray-workers", type=int, default=0, metavar="N", help="Ray workers, 0 = one per CPU")
    parser.add_argument("--chunk-frames", type=int, default=600, metavar="N", help="video frames per Ray task")


def run(args: argparse.Namespace) -> int:
    from acfd.jobs.journal import JobFolder
    from acfd.jobs.writer import OutputOptions

    if args.every < 1 or args.start < 0 or (args.end is not None and args.end <= args.start):
        return _fail("--every must be >= 1, --start >= 0 and --end > --start", 2)
    if args.min_score is not None and not 0.0 <= args.min_score <= 1.0:
        return _fail(f"--min-score {args.min_score}: must be between 0 and 1", 2)
    if not args.cut_threshold > 0.0 or args.chunk_frames < 1 or args.ray_workers < 0 or args.threads < 0:
        return _fail("--cut-threshold must be above 0, --chunk-frames >= 1, --ray-workers and --threads >= 0", 2)
    if args.ray is not None:
        from acfd.cluster.connect import ClusterError, check_ray

        try:
            check_ray(args.ray)
        except ClusterError as err:
            return _fail(str(err), 2)
    sources, errors = find_sources(args.sources)
    for line in errors:
        print(f"acfd predict: {line}", file=sys.stderr)
    if not sources:
        return _fail("nothing to detect", 2)
    try:
        from acfd.detector import Detector

        detector = Detector(args.export or args.weights, engine=args.engine, backend=args.backend,
                            device=args.device, threads=args.threads, min_score=args.min_score)  # fmt: skip
        identity = detector.identity()
    except (ValueError, OSError, RuntimeError) as err:
        return _fail(f"cannot load the model: {' '.join(str(err).split())}", 2)
    if args.track:
        from acfd.tracking.trackers import make_tracker

        try:
            make_tracker(args.tracker)  # its library is installed
        except ValueError as err:
            return _fail(str(err), 2)
    print(f"acfd predict: {detector}", file=sys.stderr)
    options = OutputOptions(annotate=not args.no_annotate, save_crops=args.save_crops, track=args.track,
                            tracker=args.tracker, every=args.every, start=args.start, end=args.end,
                            echo_json=args.json)  # fmt: skip
    results = {"min_score": detector.min_score, "every": args.every, "start": args.start, "end": args.end,
               "track": args.track, "tracker": args.tracker if args.track else None,
               "cut_threshold": args.cut_threshold, "save_crops": args.save_crops,
               "no_annotate": args.no_annotate}  # fmt: skip
    folder = JobFolder(args.out)
    try:
        return _run_job(args, detector, identity, sources, errors, options, results, folder)
    finally:
        folder.close()


def _run_job(args, detector, identity, sources, errors, options, results, folder) -> int:
    from tqdm import tqdm

    from acfd.jobs.journal import JobError
    from acfd.jobs.writer import Writer

    try:
        state = folder.open({"model": identity, "options": results}, [str(s.path) for s in sources])
    except JobError as err:
        return _fail(str(err), 2)
    model = f"{identity['engine']} {identity['sha256'][:12]}"
    if state.complete:
        summary = json.loads(folder.summary.read_text())
        print(f"acfd predict: {args.out} already holds this job's finished results; nothing to do", file=sys.stderr)
        return _finish_line(summary, args, None)
    if state.lines or state.finished:
        print(f"acfd predict: resuming {args.out}: {len(state.finished)} sources finished, "
              f"{state.lines} lines committed", file=sys.stderr)  # fmt: skip
    writer = Writer(folder, options, state)
    started = time.perf_counter()
    progress = tqdm(total=len(sources), unit="file", desc="predict", disable=None, file=sys.stderr)
    try:
        if args.ray is not None:
            from acfd.cluster.ray_predict import RayJobError, run_on_ray

            try:
                detected, detect_s = run_on_ray(detector, sources, writer, state, options, args, progress)
            except RayJobError as err:
                progress.close()
                writer.close()
                return _fail(str(err), 1)
        else:
            from acfd.jobs.local import run_local

            detected, detect_s = run_local(detector, sources, writer, state, options, args.cut_threshold, progress)
    except JobError as err:
        progress.close()
        writer.close()
        return _fail(str(err), 2)
    finally:
        progress.close()
    summary = writer.finish(sources, len(errors), model, detector.min_score)
    wall_s = time.perf_counter() - started
    timing = {"seconds": round(wall_s, 2), "detected": detected, "resumed_after_lines": state.lines,
              "per_s_detecting": round(detected / detect_s, 2) if detect_s > 0 else 0.0,
              "per_s_overall": round(writer.new_lines / wall_s, 2) if wall_s > 0 else 0.0,
              "ray": args.ray is not None}  # fmt: skip
    folder.write_json(args.out / "timing.json", timing)
    return _finish_line(summary, args, timing)


def _finish_line(summary: dict, args: argparse.Namespace, timing: dict | None) -> int:
    images, frames, faces, failed = summary["images"], summary["video_frames"], summary["faces"], summary["failed"]
    parts = [f"{images} images, {frames} video frames, {faces} faces (score >= {summary['min_score']:g})"]
    if "tracks" in summary:
        parts.append(f"{summary['tracks']} tracks")
    if timing is not None:
        parts.append(f"{timing['per_s_overall']:.1f} per second overall ({timing['per_s_detecting']:.1f} detecting)")
    if failed:
        parts.append(f"{failed} inputs failed")
    line = "acfd predict: " + ", ".join(parts) + f"; results in {args.out}"
    print(line, file=sys.stderr if args.json else sys.stdout)
    if images + frames == 0:
        return 2
    return 1 if failed else 0


def _fail(message: str, code: int) -> int:
    print(f"acfd predict: {' '.join(str(message).split())}", file=sys.stderr)
    return code
