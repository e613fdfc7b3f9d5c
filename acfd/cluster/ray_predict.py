"""The driver of ``acfd predict --ray``: plan units, keep the workers busy, write results in order.

Units: an image is one unit; a video is cut into chunks of ``--chunk-frames`` frames on the
sampling grid (the last chunk open-ended, so frames beyond the count the container states are not
lost). Each chunk is read by its worker with one sampling step of overlap before it, so the scene-cut
flags at chunk borders are the ones a whole read gives (``acfd.jobs.sources.read_video``).

Tracks need no stitching: workers return detections only, and this process feeds them, in frame
order, to the same writer and tracker a local run uses. The tracker costs well under a millisecond
a frame, so one process keeps up with many workers, and the tracks of a Ray run are those of a
local run by construction (including across chunk borders). Where the writer needs pixels
(annotated videos, crops) it reads the video itself, in order.

Scheduling: ``--ray-workers`` actors (default one per CPU of the cluster, 1 CPU and 1 engine thread
each), each given at most two units at a time, the earliest unit first, and never more than a few
units ahead of the writer; results are written as soon as all earlier units are. A worker that
dies is restarted and its unit retried by Ray (``max_restarts``/``max_task_retries`` = ``RETRIES``);
input a worker cannot read comes back as a one-line error, reported and counted as a failed source
as in a local run. A unit that still fails
stops the job with ``RayJobError`` (one line): what is committed stays, and rerunning the command
resumes from there, so no chunk is ever skipped silently.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

from acfd.jobs.journal import ResumeState
from acfd.jobs.sources import Source, no_frames_message, probe_video
from acfd.jobs.writer import OutputOptions, Writer

RETRIES = 3
IN_FLIGHT_PER_WORKER = 2


class RayJobError(Exception):
    """A unit failed on the cluster after its retries (one line); the job stops, resumable."""


@dataclass
class Unit:
    source: Source
    spec: dict  # what the worker gets
    first_of_source: bool
    last_of_source: bool
    fps: float = 0.0


def plan_units(sources: list[Source], state: ResumeState, options: OutputOptions, chunk_frames: int,
               cut_threshold: float, report) -> list[Unit]:  # fmt: skip
    """The units still to do, in writing order; a video OpenCV cannot open is reported here."""
    units: list[Unit] = []
    step = math.ceil(chunk_frames / options.every) * options.every
    for source in sources:
        path = str(source.path)
        if path in state.finished:
            continue
        if not source.video:
            units.append(Unit(source, {"kind": "image", "path": path}, True, True))
            continue
        try:
            fps, count = probe_video(source.path)
        except OSError as err:
            report(source, str(err))
            continue
        committed = state.records.get(path, []) if state.in_progress == path else []
        first = committed[-1]["frame"] + options.every if committed else options.start
        stop = options.end if options.end is not None else None
        known_end = min(count, stop) if (count and stop is not None) else (count or stop)
        starts = list(range(first, known_end, step)) if known_end else []
        starts = starts or [first]
        for k, a in enumerate(starts):
            last = k == len(starts) - 1
            spec = {"kind": "video", "path": path, "first": a, "stop": stop if last else a + step,
                    "every": options.every, "origin": options.start, "cut_threshold": cut_threshold}  # fmt: skip
            units.append(Unit(source, spec, k == 0, last, fps))
    return units


def run_on_ray(detector, sources: list[Source], writer: Writer, state: ResumeState, options: OutputOptions, args,
               progress) -> tuple[int, float]:  # fmt: skip
    import ray

    from acfd.cluster.connect import ClusterError, connect, disconnect
    from acfd.cluster.worker import DetectWorker, model_bundle

    def report(source: Source, message: str) -> None:
        message = " ".join(message.split())
        writer.failed(source, message)
        progress.write(f"acfd predict: {message}", file=sys.stderr)
        progress.update(1)

    units = plan_units(sources, state, options, args.chunk_frames, args.cut_threshold, report)
    progress.update(sum(1 for s in sources if str(s.path) in state.finished))
    if not units:
        return 0, 0.0
    try:
        started = connect(args.ray)
    except ClusterError as err:
        raise RayJobError(str(err)) from err
    try:
        workers = args.ray_workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        bundle = ray.put(model_bundle(detector, threads=1))
        actor = ray.remote(DetectWorker).options(num_cpus=1, max_restarts=RETRIES, max_task_retries=RETRIES)
        actors = [actor.remote() for _ in range(min(workers, len(units)))]
        print(f"acfd predict: {len(units)} units on {len(actors)} Ray workers", file=sys.stderr)
        try:
            return _schedule(ray, actors, [bundle], units, writer, options, report, progress)
        finally:
            for a in actors:
                ray.kill(a)
    finally:
        if started:
            disconnect()


def _schedule(ray, actors, bundle: list, units: list[Unit], writer: Writer, options: OutputOptions, report,
              progress) -> tuple[int, float]:  # fmt: skip
    load = [0] * len(actors)
    in_flight: dict = {}
    done: dict[int, dict] = {}
    submitted = written = detected = 0
    detect_s = 0.0
    dead: set[str] = set()  # sources that failed part way: their later units are dropped, reported once
    frames_of_source, resumed = 0, False
    look_ahead = 4 * IN_FLIGHT_PER_WORKER * len(actors)  # results held for writing stay few
    while written < len(units):
        while submitted < len(units) and min(load) < IN_FLIGHT_PER_WORKER and submitted - written < look_ahead:
            a = load.index(min(load))
            in_flight[actors[a].run.remote(units[submitted].spec, bundle)] = (a, submitted)
            load[a] += 1
            submitted += 1
        ready, _ = ray.wait(list(in_flight), num_returns=1)
        for ref in ready:
            a, k = in_flight.pop(ref)
            load[a] -= 1
            try:
                done[k] = ray.get(ref)
            except ray.exceptions.RayError as err:
                unit = units[k].spec
                where = f" frames {unit['first']}..{unit['stop'] or 'end'}" if unit["kind"] == "video" else ""
                raise RayJobError(f"{unit['path']}{where} failed on Ray after {RETRIES} retries "
                                  f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
                                  "what is written is kept: rerun the same command to resume") from err  # fmt: skip
        while written in done:
            unit, result = units[written], done.pop(written)
            written += 1
            source = unit.source
            if str(source.path) in dead:
                continue
            if "error" in result:
                dead.add(str(source.path))
                report(source, result["error"])
                continue
            detect_s += result["seconds"]
            try:
                if not source.video:
                    ((_, _, _, size, boxes, scores),) = result["frames"]
                    writer.image(source, boxes, scores, size)
                    detected += 1
                    progress.update(1)
                    continue
                if unit.first_of_source:
                    resumed = writer.begin_video(source, unit.fps) != options.start
                    frames_of_source = 0
                for index, time_s, cut, size, boxes, scores in result["frames"]:
                    writer.frame(index, time_s, cut, size, boxes, scores)
                    frames_of_source += 1
                    detected += 1
                if unit.last_of_source:
                    if frames_of_source == 0 and not resumed:
                        raise OSError(no_frames_message(source.path))
                    writer.end_video()
                    progress.update(1)
            except (ValueError, OSError) as err:  # what the writer reads again (pixels) can fail too
                dead.add(str(source.path))
                report(source, str(err))
    return detected, detect_s
