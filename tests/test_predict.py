"""The Python API (``acfd.Detector``) and ``acfd predict`` on the embedded model, without a server.

One module export of the embedded model into a temporary cache (``ACFD_CACHE``); generated scenes
as images, a folder and an MP4 written here with OpenCV. Detector answers are compared across
input kinds (path, bytes, RGB, BGR), with evaluation's PyTorch inference (``backend="torch"``), and
with what ``acfd predict`` writes for the same (decoded) video frames and images. The served
ensemble's side of the comparison is ``tests/serving/test_predict_server.py``.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from acfd.cli import main as acfd_main

BOX_ATOL = 1.0  # pixels
SCORE_ATOL = 1e-3


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    folder = tmp_path_factory.mktemp("acfd_cache")
    patch = pytest.MonkeyPatch()
    patch.setenv("ACFD_CACHE", str(folder))
    yield folder
    patch.undo()


@pytest.fixture(scope="module")
def detector(cache):
    from acfd import Detector

    return Detector(threads=1)


@pytest.fixture(scope="module")
def scenes() -> list[np.ndarray]:
    from acfd.scenes.synth import generate_scene

    # seeds on which the embedded model (at its display threshold) finds faces in two of the three scenes
    return [generate_scene(np.random.default_rng((21, i)), 480, 270)[0] for i in range(5, 8)]


def write_video(path, frames: list[np.ndarray], fps: float = 10.0):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (frames[0].shape[1], frames[0].shape[0]))
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def decoded_frames(path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames


def assert_close(got_boxes, got_scores, want_boxes, want_scores, what: str) -> None:
    got_boxes = np.asarray(got_boxes, np.float32).reshape(-1, 4)
    want_boxes = np.asarray(want_boxes, np.float32).reshape(-1, 4)
    assert got_boxes.shape == want_boxes.shape, f"{what}: {len(got_boxes)} against {len(want_boxes)} detections"
    np.testing.assert_allclose(got_scores, want_scores, rtol=0, atol=SCORE_ATOL, err_msg=what)
    np.testing.assert_allclose(got_boxes, want_boxes, rtol=0, atol=BOX_ATOL, err_msg=what)


def test_every_kind_of_input_gives_the_same_detections(detector, scenes, tmp_path):
    found = [i for i, s in enumerate(scenes) if len(detector(s))]
    assert found, "the embedded model should find a face on one of the generated scenes"
    scene = scenes[found[0]]
    path = tmp_path / "scene.png"
    cv2.imwrite(str(path), cv2.cvtColor(scene, cv2.COLOR_RGB2BGR))
    want = detector(scene)
    assert want.min_score == pytest.approx(detector.display_threshold)
    assert want.image_size == (480, 270) and np.all(np.diff(want.scores) <= 0)
    for label, got in (
        ("path", detector(path)),
        ("str path", detector(str(path))),
        ("bytes", detector(path.read_bytes())),
        ("BGR array", detector(np.ascontiguousarray(scene[:, :, ::-1]), channels="bgr")),
    ):
        assert_close(got.boxes, got.scores, want.boxes, want.scores, label)
    batch = detector.batch(scenes)
    assert len(batch) == 3
    assert_close(batch[found[0]].boxes, batch[found[0]].scores, want.boxes, want.scores, "batch")
    everything = detector(scene, min_score=0.0)
    assert len(everything) >= len(want) and everything.scores.min() > 0.08  # the evaluation cut
    assert [d.box for d in want][0] == tuple(want.boxes[0].tolist())
    assert json.dumps(want.to_dict())  # plain data


def test_torch_backend_equals_evaluation_inference(cache, scenes):
    from acfd import Detector
    from acfd.training.checkpoint import load_model
    from acfd.training.evaluation.inference import detect
    from acfd.export.graph import fuse_copy
    from acfd.training.model import Predictor
    from acfd.weights import DEFAULT_WEIGHTS

    det = Detector(backend="torch", min_score=0.0)
    model, preset, _ = load_model(DEFAULT_WEIGHTS)
    predictor = Predictor(fuse_copy(model)).eval()
    for i, scene in enumerate(scenes[:2]):
        boxes, scores = detect(predictor, scene, preset.inference.test_scales, preset.inference)
        got = det(scene)
        assert_close(got.boxes, got.scores, boxes, scores, f"scene {i}")


def test_engine_detections_are_close_to_float32_pytorch(detector, scenes):
    """The default (int8) engine against the float32 network: the strong faces are the same faces."""
    from acfd import Detector

    reference = Detector(backend="torch")
    for scene in scenes:
        want, got = reference(scene, min_score=0.6), detector(scene, min_score=0.3)
        for box in want.boxes:
            lo, hi = np.maximum(box[:2], got.boxes[:, :2]), np.minimum(box[2:], got.boxes[:, 2:])
            inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
            union = np.prod(box[2:] - box[:2]) + np.prod(got.boxes[:, 2:] - got.boxes[:, :2], axis=1) - inter
            assert (inter / union).max(initial=0.0) > 0.7


def test_the_export_is_cached(detector, cache):
    from acfd import Detector

    exports = list((cache / "exports").iterdir())
    assert len(exports) == 1 and (exports[0] / "model.int8.onnx").is_file()
    again = Detector(exports[0], threads=1)  # an export folder works as the model too
    assert again.engine_name == detector.engine_name
    assert len(list((cache / "exports").iterdir())) == 1


@pytest.mark.parametrize(
    "image,needle",
    [
        (np.zeros((20, 30, 3), np.float32), "must be uint8 pixels"),
        (np.zeros((20, 30, 5), np.uint8), "want [H, W, 3]"),
        (b"not an image at all", "cannot decode"),
        ("/nonexistent/frame.png", "cannot read"),
    ],
)
def test_bad_images_are_one_line_errors(detector, image, needle):
    with pytest.raises(ValueError) as info:
        detector(image)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_bad_model_arguments(cache, tmp_path):
    from acfd import Detector

    with pytest.raises(ValueError, match="backend 'tensorflow'"):
        Detector(backend="tensorflow")
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        Detector(tmp_path / "missing.pt")
    from acfd.detector import to_rgb

    with pytest.raises(ValueError, match="channels 'rgba'"):
        to_rgb(np.zeros((4, 4, 3), np.uint8), "rgba")


def test_predict_on_a_video_and_a_folder_matches_the_detector(detector, scenes, tmp_path, capsys):
    frames = [scenes[i // 3] for i in range(9)]  # three scenes, three frames each
    video = tmp_path / "clip.mp4"
    write_video(video, frames)
    folder = tmp_path / "frames"
    (folder / "inner").mkdir(parents=True)
    for i, scene in enumerate(scenes[:2]):
        cv2.imwrite(str(folder / "inner" / f"s{i}.png"), cv2.cvtColor(scene, cv2.COLOR_RGB2BGR))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path / "out"
    code = acfd_main(["predict", str(video), str(folder), str(tmp_path / "missing.mp4"), "--out", str(out),
                      "--every", "2", "--start", "1", "--save-crops", "--json"])  # fmt: skip
    printed = capsys.readouterr()
    assert code == 1  # two inputs failed: the broken PNG and the missing file, one line each
    errors = [
        line
        for line in printed.err.splitlines()
        if line.startswith("acfd predict:") and ("missing.mp4" in line or "broken.png" in line)
    ]
    assert len(errors) == 2
    records = [json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()]
    assert [json.loads(line) for line in printed.out.splitlines()] == records  # --json echoes them
    video_records = [r for r in records if r["frame"] is not None]
    assert [r["frame"] for r in video_records] == [1, 3, 5, 7]
    assert [r["time_s"] for r in video_records] == pytest.approx([0.1, 0.3, 0.5, 0.7])
    decoded = decoded_frames(video)
    assert len(decoded) == 9
    for record in video_records:
        want = detector(decoded[record["frame"]])
        got = record["detections"]
        assert record["faces"] == len(got) == len(want)
        assert_close(
            [d["box"] for d in got], [d["score"] for d in got], want.boxes, want.scores, f"frame {record['frame']}"
        )
    image_records = {r["source"]: r for r in records if r["frame"] is None}
    for i in range(2):
        record = image_records[str(folder / "inner" / f"s{i}.png")]
        want = detector(scenes[i])
        assert_close([d["box"] for d in record["detections"]], [d["score"] for d in record["detections"]],
                     want.boxes, want.scores, f"image {i}")  # fmt: skip
    assert (out / "clip.annotated.mp4").is_file() and len(decoded_frames(out / "clip.annotated.mp4")) == 4
    assert (out / "frames" / "inner" / "s0.png").is_file()
    crops = sorted((out / "crops").rglob("*.png"))
    assert len(crops) == sum(r["faces"] for r in records)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 2 and summary["video_frames"] == 4 and summary["failed"] == 2
    timing = json.loads((out / "timing.json").read_text())  # this run's speed, kept apart from its results
    assert timing["detected"] == 6 and timing["per_s_detecting"] > 0


def test_predict_with_nothing_readable_exits_2(cache, tmp_path, capsys):
    assert acfd_main(["predict", str(tmp_path / "nothing_here")]) == 2
    err = capsys.readouterr().err
    assert "no such file or folder" in err and "nothing to detect" in err
    assert acfd_main(["predict", str(tmp_path), "--every", "0"]) == 2
