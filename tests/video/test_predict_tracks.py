"""``acfd predict --track`` and ``Detector.track`` on generated cartoon videos, with the embedded model.

One tracked run over two videos and a folder of images (with a broken file) is shared by the
checks: track ids in ``detections.jsonl`` and ``tracks.json``, scene cuts ending tracks, one crop
per track, ``Detector.track`` giving the ids the command wrote; then what a rerun into the same
``--out`` does, and bad videos in track mode.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from video_outputs import frame_count, records

from acfd.cli import main as acfd_main


@dataclass
class Run:
    out: Path
    code: int
    err: str


def predict(capsys, *args) -> tuple[int, str, str]:
    code = acfd_main(["predict", *map(str, args)])
    printed = capsys.readouterr()
    return code, printed.out, printed.err


@pytest.fixture(scope="module")
def tracked(export_dir, videos, images, tmp_path_factory) -> Run:
    out = tmp_path_factory.mktemp("tracked") / "out"
    err = io.StringIO()  # capsys is per test; this run is shared by the module
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = acfd_main(["predict", str(videos.folder), str(images), "--export", str(export_dir), "--out", str(out),
                          "--track", "--save-crops", "--threads", "1"])  # fmt: skip
    return Run(out, code, err.getvalue())


def test_tracks_in_the_records_and_in_tracks_json(tracked, videos, images):
    from acfd.tracking.tracks import summarize_tracks

    assert tracked.code == 1  # the broken image, one line
    failures = [line for line in tracked.err.splitlines() if "broken.png" in line]
    assert len(failures) == 1 and failures[0].startswith("acfd predict:") and "Traceback" not in tracked.err
    recs = records(tracked.out)
    for path, clip in zip(videos.paths, videos.clips):
        mine = [r for r in recs if r["source"] == str(path)]
        assert [r["frame"] for r in mine] == list(range(24))
        assert [r["shot"] for r in mine] == [0] * clip.cuts[0] + [1] * (24 - clip.cuts[0])
        assert all("track" in d for r in mine for d in r["detections"])
        ids = [{d["track"] for r in mine if r["shot"] == s for d in r["detections"]} - {None} for s in (0, 1)]
        assert ids[0] and ids[1] and max(ids[0]) < min(ids[1])  # the cut ends every track; ids count on
        assert sorted(ids[0] | ids[1]) == list(range(1, len(ids[0] | ids[1]) + 1))
        lengths = [sum(any(d["track"] == t for d in r["detections"]) for r in mine) for t in ids[0] | ids[1]]
        assert max(lengths) >= 8  # faces are followed, not re-numbered every frame
        assert frame_count(tracked.out / videos.folder.name / f"{path.stem}.annotated.mp4") == 24
    stills = [r for r in recs if r["frame"] is None]
    assert len(stills) == 3 and all(r["shot"] is None and "track" not in str(r["detections"]) for r in stills)
    tracks = json.loads((tracked.out / "tracks.json").read_text())
    assert tracks["tracker"] == "bytetrack"
    want = summarize_tracks(recs)
    assert [{k: v for k, v in t.items() if k != "crop"} for t in tracks["tracks"]] == want
    summary = json.loads((tracked.out / "summary.json").read_text())
    assert summary["tracks"] == len(want) and summary["video_frames"] == 48 and summary["images"] == 3
    assert summary["failed"] == 1


def test_one_crop_per_track_from_its_best_frame(tracked, videos):
    tracks = json.loads((tracked.out / "tracks.json").read_text())["tracks"]
    crops = sorted((tracked.out / "crops").rglob("*_t*.png"))
    assert len(crops) == len(tracks)
    for track in tracks:
        crop = cv2.imread(str(tracked.out / track["crop"]))
        x1, y1, x2, y2 = track["best_box"]
        frame = decoded_frame(Path(track["source"]), track["best_frame"])
        want = frame[max(int(np.floor(y1)), 0) : int(np.ceil(y2)), max(int(np.floor(x1)), 0) : int(np.ceil(x2))]
        assert crop is not None and np.array_equal(crop, want), track["crop"]


def decoded_frame(path: Path, index: int) -> np.ndarray:
    capture = cv2.VideoCapture(str(path))
    for _ in range(index + 1):
        ok, frame = capture.read()
    capture.release()
    assert ok
    return frame


def test_detector_track_gives_the_ids_the_command_wrote(tracked, videos, export_dir):
    from acfd import Detector

    detector = Detector(export_dir, threads=1)
    recs = [r for r in records(tracked.out) if r["source"] == str(videos.paths[1])]
    frames = list(detector.track(videos.paths[1]))
    assert [(f.frame, f.shot) for f in frames] == [(r["frame"], r["shot"]) for r in recs]
    for f, r in zip(frames, recs):
        assert f.ids == [d["track"] for d in r["detections"]]
        assert [face.score for face, _ in f] == pytest.approx([d["score"] for d in r["detections"]], abs=1e-4)
    sampled = list(detector.track(videos.paths[1], every=2, start=1, end=9))
    assert [f.frame for f in sampled] == [1, 3, 5, 7]
    arrays = list(detector.track(videos.clips[0].frames[:14], fps=24.0, tracker="iou"))
    assert [f.shot for f in arrays] == [0] * 12 + [1, 1] and arrays[1].time_s == pytest.approx(1 / 24)
    with pytest.raises(ValueError, match="every must be >= 1"):
        next(detector.track(videos.paths[0], every=0))
    with pytest.raises(ValueError, match="tracker 'sort'"):
        next(detector.track(videos.paths[0], tracker="sort"))
    with pytest.raises(OSError, match="cannot open it as a video"):
        next(detector.track(videos.folder / "missing.mp4"))


def test_a_rerun_of_a_finished_job_does_nothing_and_another_job_is_refused(export_dir, videos, tmp_path, capsys):
    out = tmp_path / "out"
    base = [videos.paths[0], "--export", export_dir, "--out", out, "--track", "--no-annotate", "--end", "6"]
    assert predict(capsys, *base)[0] == 0
    before = (out / "detections.jsonl").read_text()
    code, _, err = predict(capsys, *base)
    assert code == 0 and "nothing to do" in err and (out / "detections.jsonl").read_text() == before
    shown = json.loads((out / "job.json").read_text())["options"]["min_score"]  # the model's display threshold
    code, _, err = predict(capsys, *base, "--min-score", "0.3")  # the journal's tests check each option
    assert code == 2 and f"--min-score {shown} (now 0.3)" in err and len(err.strip().splitlines()) == 2, err
    code, _, err = predict(capsys, videos.paths[1], *base[1:])
    assert code == 2 and "other sources" in err
    old = tmp_path / "old"
    old.mkdir()
    (old / "detections.jsonl").write_text("{}\n")
    code, _, err = predict(capsys, videos.paths[0], "--export", export_dir, "--out", old)
    assert code == 2 and "without a job.json" in err and "Traceback" not in err


def test_bad_videos_are_one_line_errors_in_track_mode(export_dir, videos, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    (bad / "empty.mp4").write_bytes(b"")
    code, _, err = predict(capsys, bad, videos.paths[0], "--export", export_dir, "--out", tmp_path / "out",
                           "--track", "--no-annotate", "--end", "4")  # fmt: skip
    assert code == 1 and "Traceback" not in err
    lines = [line for line in err.splitlines() if "corrupt.mp4" in line or "empty.mp4" in line]
    assert len(lines) == 2 and all(line.startswith("acfd predict:") for line in lines)
    progress = [json.loads(line) for line in (tmp_path / "out" / "progress.jsonl").read_text().splitlines()]
    assert [p["error"] is not None for p in progress] == [True, True, False]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["video_frames"] == 4
