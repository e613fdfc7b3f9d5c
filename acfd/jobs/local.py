"""``acfd predict`` in this process: the sources one after another, each from where the job stopped.

``run_local(detector, sources, writer, state, options, progress)`` detects every image and sampled
video frame the job has not committed yet and hands it, with its pixels, to the ``Writer``. An input
that cannot be read is one line on stderr and a failed source; the job goes on. Returns the number
of images and frames detected in this session and the seconds spent detecting them.
"""

from __future__ import annotations

import sys
import time

from acfd.jobs.journal import ResumeState
from acfd.jobs.sources import Source, probe_video, read_video
from acfd.jobs.writer import OutputOptions, Writer


def run_local(
    detector, sources: list[Source], writer: Writer, state: ResumeState, options: OutputOptions, cut_threshold: float,
    progress
) -> tuple[int, float]:  # fmt: skip
    from acfd.inference.image_io import read_image

    detected, detect_s = 0, 0.0
    for source in sources:
        if str(source.path) in state.finished:
            progress.update(1)
            continue
        try:
            if not source.video:
                if state.in_progress == str(source.path):
                    writer.image_committed(source)
                else:
                    rgb = read_image(source.path)
                    begin = time.perf_counter()
                    prediction = detector(rgb)
                    detect_s += time.perf_counter() - begin
                    detected += 1
                    writer.image(source, prediction.boxes, prediction.scores, (rgb.shape[1], rgb.shape[0]), rgb)
            else:
                fps, _ = probe_video(source.path)
                first = writer.begin_video(source, fps)
                resumed = first != options.start
                for frame in read_video(source.path, first, options.end, options.every, origin=options.start,
                                        cut_threshold=cut_threshold, required=not resumed):  # fmt: skip
                    begin = time.perf_counter()
                    prediction = detector(frame.rgb)
                    detect_s += time.perf_counter() - begin
                    detected += 1
                    size = (frame.rgb.shape[1], frame.rgb.shape[0])
                    writer.frame(frame.index, frame.time_s, frame.cut, size, prediction.boxes, prediction.scores,
                                 frame.rgb)  # fmt: skip
                    progress.set_postfix_str(f"{source.path.name} frame {frame.index}")
                writer.end_video()
        except (ValueError, OSError) as err:  # ImageError is a ValueError
            message = " ".join(str(err).split())
            writer.failed(source, message)
            progress.write(f"acfd predict: {message}", file=sys.stderr)
        progress.update(1)
    return detected, detect_s
