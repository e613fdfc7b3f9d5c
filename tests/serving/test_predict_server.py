"""``acfd predict`` and ``acfd.Detector`` against the served ensemble, on the session server
(``conftest.py``): the same video frames and images give the same boxes (within 1 px) and scores
(within 1e-3) in process and from the server."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from acfd.cli import main as acfd_main

pytestmark = pytest.mark.server


def test_predict_detector_and_server_agree_on_video_frames_and_images(serving, tmp_path, capsys):
    from acfd import Detector
    from acfd.clients.grpc_client import DetectorClient
    from acfd.scenes.synth import generate_scene

    scenes = [generate_scene(np.random.default_rng((31, i)), 288, 176)[0] for i in range(3)]
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (288, 176))
    for scene in scenes:
        writer.write(cv2.cvtColor(scene, cv2.COLOR_RGB2BGR))
    writer.release()
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "one.png"), cv2.cvtColor(scenes[0], cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"
    code = acfd_main(["predict", str(video), str(folder), "--export", str(serving.export_dir),
                      "--min-score", "0", "--out", str(out), "--no-annotate"])  # fmt: skip
    capsys.readouterr()
    assert code == 0
    records = [json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()]
    capture = cv2.VideoCapture(str(video))
    frames = []
    while (read := capture.read())[0]:
        frames.append(cv2.cvtColor(read[1], cv2.COLOR_BGR2RGB))
    capture.release()
    inputs = {(str(video), i): frame for i, frame in enumerate(frames)}
    inputs[(str(folder / "one.png"), None)] = scenes[0]
    assert sorted((r["source"], r["frame"] if r["frame"] is not None else -1) for r in records) == sorted(
        (s, f if f is not None else -1) for s, f in inputs
    )
    detector = Detector(serving.export_dir, min_score=0.0, threads=1)
    with DetectorClient(serving.url, timeout_s=60, min_score=0.0) as client:
        for record in records:
            rgb = inputs[(record["source"], record["frame"])]
            what = f"{record['source']} frame {record['frame']}"
            mine = detector(rgb)
            served = client.detect(rgb)  # sent as lossless PNG: the same pixels
            got_boxes = np.array([d["box"] for d in record["detections"]], np.float32).reshape(-1, 4)
            got_scores = np.array([d["score"] for d in record["detections"]], np.float32)
            assert len(got_scores) == len(mine) == len(served) > 0, what
            for label, boxes, scores in (
                ("Detector", mine.boxes, mine.scores),
                (
                    "server",
                    np.array([d.box for d in served], np.float32),
                    np.array([d.score for d in served], np.float32),
                ),
            ):
                np.testing.assert_allclose(got_scores, scores, rtol=0, atol=1e-3, err_msg=f"{what} vs {label}")
                np.testing.assert_allclose(got_boxes, boxes, rtol=0, atol=1.0, err_msg=f"{what} vs {label}")
