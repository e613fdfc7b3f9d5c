"""Video frames per second of ``acfd predict``: one process against a local Ray with 1 and 2 workers.

    .venv/bin/python benchmarks/video_throughput.py [--frames 1200] [--size 640x360] [--workers 1,2]
                                                    [--chunk-frames 300] [--track] [--annotate] [--json OUT]

One generated cartoon video (``acfd.scenes.clips``, shots of 240 frames) is written once; then each
mode runs the real command in its own process, one after the other, on a fresh ``--out``:
``acfd predict VIDEO --no-annotate`` (every core, as a user runs it) and ``... --ray --ray-workers N``
(a local Ray started by the command, one engine thread per worker). Reported per mode:

* wall seconds of the whole command (Python start, model load, Ray start, workers' model load);
* frames/s over that wall time, and over the job alone (``timing.json``: from the job's start to its
  end, Ray and worker start included);
* frames/s per worker while detecting (``timing.json`` ``per_s_detecting``: frames over the seconds
  workers spent in the detector), the rate to plan a cluster with: a cluster of W such workers
  detects about W times it, as long as the one writer keeps up (it costs well under a millisecond
  a frame with ``--no-annotate``; drawing and encoding an annotated video cost it a few).

Run it on an idle machine: every mode uses every core, so anything else running skews the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def run_mode(name: str, video: Path, out: Path, extra: list[str]) -> dict:
    command = [sys.executable, "-m", "acfd", "predict", str(video), "--out", str(out), *extra]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{name}: acfd predict exited {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
    timing = json.loads((out / "timing.json").read_text())
    frames = json.loads((out / "summary.json").read_text())["video_frames"]
    return {"mode": name, "frames": frames, "wall_s": round(wall, 1), "per_s_wall": round(frames / wall, 1),
            "job_s": timing["seconds"], "per_s_job": timing["per_s_overall"],
            "per_s_per_worker_detecting": timing["per_s_detecting"]}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    from acfd.scenes.clips import generate_clip, write_clip

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=1200, help="video length in frames (24 fps)")
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--workers", default="1,2", help="Ray worker counts to run, comma-separated")
    parser.add_argument("--chunk-frames", type=int, default=300)
    parser.add_argument("--track", action="store_true", help="with --track (the tracker runs in the writer)")
    parser.add_argument("--annotate", action="store_true", help="write the annotated video too")
    parser.add_argument("--export", type=Path, default=None, help="an export folder (default: the embedded model)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))

    with tempfile.TemporaryDirectory(prefix="acfd-throughput-") as tmp:
        folder = Path(tmp)
        shots = max(1, args.frames // 240)
        clip = generate_clip(np.random.default_rng(11), width, height, args.frames, shots)
        video = write_clip(folder / "episode.mp4", clip)
        del clip
        model = ["--export", str(args.export)] if args.export else []
        common = model + ([] if args.annotate else ["--no-annotate"]) + (["--track"] if args.track else [])
        # warm the export cache once, so no mode pays for exporting the checkpoint
        warm = [
            sys.executable,
            "-m",
            "acfd",
            "predict",
            str(video),
            "--out",
            str(folder / "warm"),
            "--end",
            "2",
            *model,
        ]
        subprocess.run(warm, capture_output=True, check=True)
        rows = [run_mode("one process (every core)", video, folder / "local", common)]
        for n in (int(v) for v in args.workers.split(",") if v.strip()):
            ray = ["--ray", "--ray-workers", str(n), "--chunk-frames", str(args.chunk_frames)]
            rows.append(
                run_mode(f"local Ray, {n} worker{'s' if n > 1 else ''}", video, folder / f"ray{n}", common + ray)
            )
    what = ("annotated video" if args.annotate else "--no-annotate") + (", --track" if args.track else "")
    print(f"\n{args.frames} frames of {width}x{height}, {os.cpu_count()} CPUs, {what}\n")
    print("| mode | wall s | frames/s (wall) | job s | frames/s (job) | frames/s per worker, detecting |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['mode']} | {r['wall_s']} | {r['per_s_wall']} | {r['job_s']} | {r['per_s_job']} | "
              f"{r['per_s_per_worker_detecting']} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
