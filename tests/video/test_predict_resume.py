"""``acfd predict`` killed with SIGKILL and run again: the finished outputs equal an uninterrupted run's.

The killed run is a real process (``python -m acfd predict``), killed once ``detections.jsonl`` holds
a given number of lines: mid-video (tracks, crops and annotated video of a video cut in two) and
mid-folder (images, one of them broken, before and after the kill). The rerun is the same command.
The journal's own rules (a partial last line, lines that do not fit, another job) are checked on
hand-written files.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from video_outputs import records, same_outputs

from acfd.cli import main as acfd_main
from acfd.jobs.journal import JobError, JobFolder


def killed_at(lines: int, args: list, timeout_s: float = 120.0) -> int:
    """Run ``acfd predict ARGS`` in a process and SIGKILL it once ``detections.jsonl`` has ``lines`` lines."""
    out = Path(args[args.index("--out") + 1])
    process = subprocess.Popen([sys.executable, "-m", "acfd", "predict", *map(str, args)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + timeout_s
    try:
        while process.poll() is None and time.monotonic() < deadline:
            path = out / "detections.jsonl"
            if path.is_file() and path.read_bytes().count(b"\n") >= lines:
                os.kill(process.pid, signal.SIGKILL)
                break
            time.sleep(0.005)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (out / "summary.json").exists()
    return (out / "detections.jsonl").read_bytes().count(b"\n")


def test_killed_mid_video_then_resumed_equals_an_uninterrupted_run(export_dir, videos, tmp_path, capsys):
    common = [videos.folder, "--export", export_dir, "--track", "--save-crops", "--threads", "1", "--every", "2",
              "--start", "1"]  # fmt: skip
    want, got = tmp_path / "whole", tmp_path / "killed"
    assert acfd_main(["predict", *map(str, common), "--out", str(want)]) == 0
    committed = killed_at(16, [*common, "--out", got])  # 12 frames of the first video, then some of the second
    assert 12 < committed < 24
    capsys.readouterr()
    assert acfd_main(["predict", *map(str, common), "--out", str(got)]) == 0
    err = capsys.readouterr().err
    assert "resuming" in err and f"{committed} lines committed" in err
    same_outputs(got, want)
    tracks = json.loads((want / "tracks.json").read_text())["tracks"]
    second = [t for t in tracks if t["source"] == str(videos.paths[1])]
    assert any(t["first_frame"] < 2 * (committed - 12) - 1 < t["last_frame"] for t in second)  # a track across the kill
    timing = json.loads((got / "timing.json").read_text())
    assert timing["resumed_after_lines"] == committed and timing["detected"] == 24 - committed


@pytest.fixture(scope="module")
def stills(tmp_path_factory) -> Path:
    from acfd.scenes.synth import generate_scene

    folder = tmp_path_factory.mktemp("stills") / "folder"
    folder.mkdir()
    for k in range(8):
        scene = generate_scene(np.random.default_rng((28, k)), 256, 160)[0]
        cv2.imwrite(str(folder / f"s{k}.png"), cv2.cvtColor(scene, cv2.COLOR_RGB2BGR))
    (folder / "s2_broken.png").write_bytes(b"not a png")
    return folder


def test_killed_mid_folder_then_resumed_equals_an_uninterrupted_run(export_dir, stills, tmp_path, capsys):
    common = [stills, "--export", export_dir, "--save-crops", "--threads", "1"]
    want, got = tmp_path / "whole", tmp_path / "killed"
    assert acfd_main(["predict", *map(str, common), "--out", str(want)]) == 1  # the broken file
    committed = killed_at(4, [*common, "--out", got])
    assert 4 <= committed < 8
    capsys.readouterr()
    assert acfd_main(["predict", *map(str, common), "--out", str(got)]) == 1
    same_outputs(got, want)
    assert (got / "progress.jsonl").read_text().replace(str(got), "") == (want / "progress.jsonl").read_text().replace(
        str(want), ""
    )
    assert sorted(p.name for p in (got / "folder").iterdir()) == sorted(p.name for p in (want / "folder").iterdir())
    summary = json.loads((got / "summary.json").read_text())
    assert (summary["images"], summary["failed"]) == (8, 1) and len(records(got)) == 8


def identity(**options) -> dict:
    return {"model": {"engine": "e", "sha256": "0" * 64}, "options": {"min_score": 0.5, "track": False, **options}}


def test_a_partial_last_line_is_cut_off_and_what_is_committed_is_kept(tmp_path):
    folder = JobFolder(tmp_path / "out")
    sources = ["a.png", "v.mp4", "w.mp4"]
    assert folder.open(identity(), sources).lines == 0
    line = {"source": "a.png", "frame": None, "detections": []}
    with folder.detections.open("a") as f:
        f.write(json.dumps(line) + "\n")
        f.write(json.dumps({"source": "v.mp4", "frame": 0, "detections": []}) + "\n")
        f.write('{"source": "v.mp4", "frame": 1, "detec')  # killed while writing
    folder.progress.write_text(json.dumps({"source": "a.png", "lines": 1, "error": None}) + "\n" + '{"sour')
    state = folder.open(identity(), sources)
    assert state.finished == {"a.png": None} and state.in_progress == "v.mp4" and state.lines == 2
    assert [r["frame"] for r in state.records["v.mp4"]] == [0]
    assert folder.detections.read_text().endswith("}\n") and folder.progress.read_text().count("\n") == 1
    assert not state.complete


def test_lines_that_do_not_fit_the_job_are_refused(tmp_path):
    folder = JobFolder(tmp_path / "out")
    folder.open(identity(), ["a.png", "b.png"])
    folder.detections.write_text(json.dumps({"source": "b.png", "frame": None, "detections": []}) + "\n")
    folder.progress.write_text(json.dumps({"source": "a.png", "lines": 1, "error": None}) + "\n")
    with pytest.raises(JobError, match="does not hold the 1 lines"):
        folder.open(identity(), ["a.png", "b.png"])
    folder.progress.write_text("")
    folder.detections.write_text(json.dumps({"source": "zzz.png", "frame": None, "detections": []}) + "\n")
    with pytest.raises(JobError, match="not about the next source"):
        folder.open(identity(), ["a.png", "b.png"])


def test_another_job_in_the_same_folder_is_refused_in_one_line(tmp_path):
    folder = JobFolder(tmp_path / "out")
    folder.open(identity(), ["a.png"])
    for other, needle in ((identity(min_score=0.3), "--min-score 0.5 (now 0.3)"),
                          (identity(track=True), "--track False (now True)"),
                          ({**identity(), "model": {"engine": "e", "sha256": "1" * 64}}, "another model")):  # fmt: skip
        with pytest.raises(JobError, match=needle.replace("(", r"\(").replace(")", r"\)")) as info:
            folder.open(other, ["a.png"])
        assert "\n" not in str(info.value)
    with pytest.raises(JobError, match="other sources"):
        folder.open(identity(), ["a.png", "b.png"])
    (tmp_path / "out" / "job.json").write_text("{not json")
    with pytest.raises(JobError, match="unreadable"):
        folder.open(identity(), ["a.png"])


def test_one_writer_per_folder(tmp_path):
    first = JobFolder(tmp_path / "out")
    first.open(identity(), ["a.png"])
    with pytest.raises(JobError, match="another acfd predict is writing"):
        JobFolder(tmp_path / "out").open(identity(), ["a.png"])
    first.close()
    JobFolder(tmp_path / "out").open(identity(), ["a.png"])  # free again
