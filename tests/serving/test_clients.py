"""The client library and ``acfd detect`` against the real server of the session fixture
(``conftest.py``): detections equal the in-process pipeline's (the served export and engine, the
same decode and post-processing, in this process), errors that stay with their image, the readiness
check, and the CLI's files and JSON lines. How far each engine may be from float32 PyTorch is
``tests/test_engines.py``'s subject.

Per-call timeouts are tested in ``tests/test_client_offline.py`` against a stand-in gRPC server:
a deadline that cancels a request on this Triton 2.51 can crash the server (issue 7368 of
triton-inference-server/server, fixed in 24.12), and this server is shared by the whole session."""

from __future__ import annotations

import asyncio
import json

import cv2
import numpy as np
import pytest

from acfd.cli import main as acfd_main
from acfd.clients.aio_client import AsyncDetectorClient
from acfd.clients.detections import Detection
from acfd.clients.grpc_client import DetectorClient, InferenceFailed, InvalidRequest, ModelNotReady, encode_image

pytestmark = pytest.mark.server

BOX_ATOL = 1e-2  # pixels: the same engine in the server and here (thread counts may differ)
SCORE_ATOL = 1e-4


@pytest.fixture(scope="module")
def scenes() -> list[np.ndarray]:
    from acfd.scenes.synth import generate_scene

    return [generate_scene(np.random.default_rng([11, i]), 288, 176)[0] for i in range(2)]


@pytest.fixture(scope="module")
def in_process(serving):
    """Detections of the served export run here: ``InProcessPipeline`` with the served engine.

    One engine thread: on a 2-core machine shared with the server's processes, threads spinning
    against each other made a forward pass many times slower than with one thread.
    """
    from acfd.inference.engines import DEFAULT_ENGINE
    from acfd.inference.pipeline import InProcessPipeline

    pipeline = InProcessPipeline(serving.export_dir, engine=DEFAULT_ENGINE, threads=1)
    cache: dict[bytes, list[Detection]] = {}  # PNG encoding is deterministic: the same scene, the same key

    def run(data: bytes) -> list[Detection]:
        if data not in cache:
            boxes, scores = pipeline(data)
            cache[data] = [Detection(tuple(float(v) for v in b), float(s)) for b, s in zip(boxes, scores, strict=True)]
        return cache[data]

    return run


def assert_same(got: list[Detection], want: list[Detection], what: str) -> None:
    assert len(got) == len(want), f"{what}: {len(got)} detections from the client, {len(want)} in process"
    if want:
        np.testing.assert_allclose(
            [d.score for d in got], [d.score for d in want], rtol=0, atol=SCORE_ATOL, err_msg=what
        )
        np.testing.assert_allclose([d.box for d in got], [d.box for d in want], rtol=0, atol=BOX_ATOL, err_msg=what)


def test_detections_equal_the_in_process_model(serving, scenes, in_process, tmp_path):
    wants = [in_process(encode_image(scene)) for scene in scenes]
    assert all(wants), "the fixture's model should detect something on every scene"
    path = tmp_path / "scene.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(scenes[0], cv2.COLOR_RGB2BGR))
    with DetectorClient(serving.url, timeout_s=60) as client:
        for i, (scene, want) in enumerate(zip(scenes, wants, strict=True)):
            assert_same(client.detect(scene), want, f"NumPy scene {i}")
        assert_same(client.detect(path), in_process(path.read_bytes()), "JPEG file")
        assert_same(client.detect(path.read_bytes()), in_process(path.read_bytes()), "JPEG bytes")
        many = client.detect_many(scenes * 2, concurrency=3)
        for i, got in enumerate(many):
            assert_same(got, wants[i % len(wants)], f"detect_many item {i}")
    with DetectorClient(serving.url, timeout_s=60, compression="gzip") as client:
        assert_same(client.detect(scenes[1]), wants[1], "gzip-compressed request")

    async def go():
        async with AsyncDetectorClient(serving.url, timeout_s=60) as client:
            return await client.detect_many(scenes, concurrency=2)

    for i, got in enumerate(asyncio.run(go())):
        assert_same(got, wants[i], f"asyncio client scene {i}")


def test_min_score_filters(serving, scenes, in_process):
    want = in_process(encode_image(scenes[0]))
    scores = sorted(d.score for d in want)
    # cut in the widest gap between neighbouring scores: the served (ONNX) and in-process scores differ
    # by ~1e-7, so a cut exactly at one detection's score could fall on either side of it
    gap, i = max((scores[i] - scores[i - 1], i) for i in range(1, len(scores)))
    assert gap > 1e-5
    cut = (scores[i - 1] + scores[i]) / 2
    with DetectorClient(serving.url, timeout_s=60, min_score=cut) as client:
        got = client.detect(scenes[0])
    assert_same(got, [d for d in want if d.score >= cut], "min_score")


def test_the_server_publishes_the_display_threshold_clients_default_to(serving, scenes, in_process):
    threshold = serving.preset.inference.display_threshold
    with DetectorClient(serving.url, timeout_s=60, min_score=None) as client:
        assert client.check_ready().display_threshold == pytest.approx(threshold)
        got = client.detect(scenes[0])
    assert_same(got, [d for d in in_process(encode_image(scenes[0])) if d.score >= threshold], "display threshold")


def test_bad_image_fails_alone(serving, scenes, in_process):
    with DetectorClient(serving.url, timeout_s=60) as client:
        results = client.detect_many([scenes[0], b"definitely not an image", scenes[1]], return_exceptions=True)
        assert isinstance(results[1], InvalidRequest)  # INVALID_ARGUMENT from the server: the caller's bytes
        assert "bytes[1]" in str(results[1]) and "cannot decode" in str(results[1])
        assert_same(results[0], in_process(encode_image(scenes[0])), "good image before the bad one")
        assert_same(results[2], in_process(encode_image(scenes[1])), "good image after the bad one")
        with pytest.raises(InferenceFailed):
            client.detect_many([scenes[0], b"junk"])


def test_model_not_loaded_is_named(serving):
    with DetectorClient(serving.url, model="no_such_model", retries=0) as client:
        with pytest.raises(ModelNotReady) as info:
            client.check_ready()
    message = str(info.value)
    assert "'no_such_model'" in message and "acfd" in message and "\n" not in message


def test_detect_cli_on_a_folder(serving, scenes, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for i, scene in enumerate(scenes[:2]):
        cv2.imwrite(str(folder / f"scene{i}.png"), cv2.cvtColor(scene, cv2.COLOR_RGB2BGR))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "out"
    code = acfd_main(["detect", str(folder), "--url", serving.url, "--out", str(out), "--json", "--min-score", "0"])
    captured = capsys.readouterr()
    assert code == 1  # one image failed, the others went through
    errors = [line for line in captured.err.splitlines() if "broken.png" in line]
    assert len(errors) == 1 and "cannot decode" in errors[0]
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["image"] for r in records] == [str(folder / "scene0.png"), str(folder / "scene1.png")]
    with DetectorClient(serving.url, timeout_s=60) as client:
        for record, scene in zip(records, scenes, strict=True):
            want = client.detect(scene)
            assert (record["width"], record["height"], record["faces"]) == (scene.shape[1], scene.shape[0], len(want))
            got = [Detection(tuple(d["box"]), d["score"]) for d in record["detections"]]
            assert_same(got, want, record["image"])
    assert "2 images" in captured.err and "1 failed" in captured.err  # the summary goes to stderr with --json
    for i, scene in enumerate(scenes[:2]):
        annotated = cv2.imread(str(out / "in" / f"scene{i}.png"))
        assert annotated is not None and annotated.shape == scene.shape
        assert not np.array_equal(cv2.cvtColor(annotated, cv2.COLOR_BGR2RGB), scene)  # boxes were drawn
    assert not (out / "in" / "broken.png").exists()
