"""Client-side behaviour that needs no inference server: server-down messages, retries, encoding,
response parsing, drawing, perf_analyzer input data and the parsing of its recorded output."""

from __future__ import annotations

import asyncio
import base64
import json
import socket

import cv2
import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from acfd.cli import main as acfd_main
from fake_triton import FakeTriton
from acfd.clients import grpc_client
from acfd.clients.detections import Detection, detections_from_arrays, draw_detections
from acfd.clients.grpc_client import (
    DetectorClient,
    DetectTimeout,
    ImageInputError,
    InferenceFailed,
    InputSpec,
    ModelNotReady,
    ServerUnavailable,
    encode_image,
    input_spec_from_config,
)
from acfd.clients.perf_analyzer import (
    PerfAnalyzerError,
    PerfAnalyzerInstall,
    check_perf_analyzer,
    last_error_line,
    parse_composing,
    parse_concurrency,
    parse_csv,
    parse_request_counts,
    write_input_data,
)

# Recorded from perf_analyzer 2.51.0 (-f out.csv --verbose-csv) against the served tiny ensemble,
# concurrency 2, on a loaded 2-core machine.
RECORDED_CSV = (
    "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,"
    "Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency,"
    "Avg latency,request/response,response wait\n"
    "2,0.411824,54,920670,3,37977,2174082,39095,5,3757861,3836325,3836325,3836325,3171889,59,3171784\n"
)
RECORDED_STDOUT = """\
 Successfully read data for 1 stream/streams with 2 step/steps.
*** Measurement Settings ***
  Batch size: 1
  Service Kind: TRITON
  Using "time_windows" mode for stabilization
  Stabilizing using average latency and throughput
  Measurement window: 2000 msec
  Latency limit: 0 msec
  Concurrency limit: 2 concurrent requests
  Using synchronous calls for inference

Request concurrency: 2
WARNING: Pass contained only one request, so sample latency standard deviation will be infinity (UINT64_MAX).
  Client:
    Request count: 3
    Throughput: 0.411824 infer/sec
    Avg latency: 3171889 usec (standard deviation 1083594 usec)
    p50 latency: 3757861 usec
    p90 latency: 3836325 usec
    p95 latency: 3836325 usec
    p99 latency: 3836325 usec
    Avg gRPC time: 3171843 usec ((un)marshal request/response 59 usec + response wait 3171784 usec)
  Server:
    Inference count: 3
    Execution count: 3
    Successful request count: 3
    Avg request latency: 3170796 usec (overhead 629787 usec + queue 1475796 usec + compute 1065213 usec)

  Composing models:
  detector, version: 1
      Inference count: 11
      Execution count: 11
      Successful request count: 11
      Avg request latency: 2066509 usec (overhead 5 usec + queue 1468755 usec + compute input 10383 usec + compute infer 587096 usec + compute output 270 usec)

  postprocess, version: 1
      Inference count: 3
      Execution count: 3
      Successful request count: 3
      Avg request latency: 15122 usec (overhead 7 usec + queue 6454 usec + compute input 475 usec + compute infer 5737 usec + compute output 2448 usec)

  preprocess, version: 1
      Inference count: 5
      Execution count: 5
      Successful request count: 5
      Avg request latency: 459395 usec (overhead 5 usec + queue 587 usec + compute input 56 usec + compute infer 432675 usec + compute output 26071 usec)

Inferences/Second vs. Client Average Batch Latency
Concurrency: 2, throughput: 0.411824 infer/sec, latency 3171889 usec
"""
RECORDED_FAILURE = """\
Request concurrency: 1
WARNING: Pass contained only one request, so sample latency standard deviation will be infinity (UINT64_MAX).
Failed to maintain requested inference load. Worker thread(s) failed to generate concurrent requests.
Thread [0] had error: in ensemble 'acfd', cannot decode 19 bytes

"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_tiny_timeout_raises_timeout_not_hang_and_does_not_cancel():
    with FakeTriton(delay_s=30.0) as fake:
        with DetectorClient(fake.url, timeout_s=10.0, retries=0) as client:
            client.check_ready()
            with pytest.raises(DetectTimeout) as info:
                client.detect(b"image bytes", timeout_s=0.2)
            assert "within 0.2 s" in str(info.value) and fake.infer_calls == 1  # retries=0: one attempt
            fake.release.set()  # the abandoned request completes; close() waits for it
        assert fake.handled.wait(5) and fake.cancelled == [False]


def test_cancel_on_timeout_sends_a_deadline():
    with FakeTriton(delay_s=1.0) as fake, DetectorClient(fake.url, cancel_on_timeout=True, retries=0) as client:
        with pytest.raises(DetectTimeout, match="within 0.2 s"):
            client.detect(b"image bytes", timeout_s=0.2)
        assert fake.handled.wait(5) and fake.cancelled == [True]


def test_async_tiny_timeout():
    from acfd.clients.aio_client import AsyncDetectorClient

    async def go(fake: FakeTriton) -> list[Detection]:
        async with AsyncDetectorClient(fake.url, timeout_s=0.2, retries=0) as client:
            with pytest.raises(DetectTimeout, match="within 0.2 s"):
                await client.detect(b"image bytes")
            fake.delay_s = 0.0
            fake.release.set()
            return await client.detect(b"image bytes")

    with FakeTriton(delay_s=30.0) as fake:
        assert asyncio.run(go(fake)) == [Detection(FakeTriton.BOX, pytest.approx(0.75))]
        assert fake.cancelled == [False, False]


def test_unavailable_is_retried_until_the_answer():
    with FakeTriton(unavailable=2) as fake, DetectorClient(fake.url, retries=2, backoff_s=0.01) as client:
        assert client.detect(b"image bytes") == [Detection(FakeTriton.BOX, pytest.approx(0.75))]
        assert fake.infer_calls == 3
    with FakeTriton(unavailable=5) as fake, DetectorClient(fake.url, retries=1, backoff_s=0.01) as client:
        with pytest.raises(ServerUnavailable, match="warming up"):
            client.detect(b"image bytes")
        assert fake.infer_calls == 2


# ---- server down --------------------------------------------------------------------------------
def test_server_down_is_one_readable_line():
    url = f"127.0.0.1:{free_port()}"
    with DetectorClient(url, retries=1, backoff_s=0.01) as client:
        with pytest.raises(ServerUnavailable) as info:
            client.detect(np.zeros((8, 8, 3), np.uint8))
    message = str(info.value)
    assert "\n" not in message
    assert url in message and "connection refused" in message


def test_async_client_server_down():
    import asyncio

    from acfd.clients.aio_client import AsyncDetectorClient

    url = f"127.0.0.1:{free_port()}"

    async def go():
        async with AsyncDetectorClient(url, retries=0) as client:
            await client.check_ready()

    with pytest.raises(ServerUnavailable, match="connection refused"):
        asyncio.run(go())


def test_detect_cli_server_down(tmp_path, capsys):
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.zeros((16, 16, 3), np.uint8))
    port = free_port()
    code = acfd_main(["detect", str(image), "--url", f"127.0.0.1:{port}", "--retries", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and f"127.0.0.1:{port}" in err[0] and "Traceback" not in err[0]


def test_loadtest_cli_bad_concurrency_and_server_down(tmp_path, capsys):
    assert acfd_main(["loadtest", "--concurrency", "4:1", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == "acfd loadtest: concurrency '4:1': need 1 <= start <= end and step >= 1"
    port = free_port()
    assert acfd_main(["loadtest", "--url", f"127.0.0.1:{port}", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"127.0.0.1:{port}" in err[0]


# ---- retries: UNAVAILABLE only, exponential backoff ---------------------------------------------
class Flaky:
    def __init__(self, statuses):
        self.statuses = list(statuses)
        self.calls = 0

    def __call__(self):
        self.calls += 1
        if self.statuses:
            raise InferenceServerException(msg="boom", status=self.statuses.pop(0))
        return "answer"


def test_retries_unavailable_with_backoff(monkeypatch):
    slept = []
    monkeypatch.setattr(grpc_client.time, "sleep", slept.append)
    client = DetectorClient("127.0.0.1:1", retries=3, backoff_s=0.5)
    flaky = Flaky(["StatusCode.UNAVAILABLE"] * 2)
    assert client._call(flaky, "x") == "answer"
    assert flaky.calls == 3 and slept == [0.5, 1.0]
    slept.clear()
    with pytest.raises(ServerUnavailable):
        client._call(Flaky(["StatusCode.UNAVAILABLE"] * 9), "x")
    assert slept == [0.5, 1.0, 2.0]  # 3 retries, then the error


@pytest.mark.parametrize(
    "status, error",
    [("StatusCode.DEADLINE_EXCEEDED", DetectTimeout), ("StatusCode.INTERNAL", grpc_client.ServerFault),
     ("StatusCode.INVALID_ARGUMENT", grpc_client.InvalidRequest), ("StatusCode.NOT_FOUND", ModelNotReady),
     ("StatusCode.UNKNOWN", grpc_client.ServerFault)],
)  # fmt: skip
def test_other_errors_are_not_retried(monkeypatch, status, error):
    monkeypatch.setattr(grpc_client.time, "sleep", lambda s: pytest.fail("must not back off"))
    flaky = Flaky([status])
    with pytest.raises(error) as info:
        DetectorClient("127.0.0.1:1", retries=3)._call(flaky, "img.png", 2.0)
    assert flaky.calls == 1
    if error is grpc_client.InvalidRequest:
        assert "refused it as invalid input" in str(info.value) and isinstance(info.value, InferenceFailed)
    if error is grpc_client.ServerFault:
        assert "the server failed on it" in str(info.value) and status.removeprefix("StatusCode.") in str(info.value)


# ---- encoding, request shape, parsing, drawing --------------------------------------------------
def test_numpy_image_is_sent_as_lossless_png():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    data = encode_image(image)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(decoded, image)


def test_paths_and_bytes_are_sent_as_they_are(tmp_path):
    path = tmp_path / "x.jpg"
    path.write_bytes(b"\xff\xd8 jpeg-ish")
    assert encode_image(path) == b"\xff\xd8 jpeg-ish"
    assert encode_image(str(path)) == b"\xff\xd8 jpeg-ish"
    assert encode_image(bytearray(b"abc")) == b"abc"
    with pytest.raises(ImageInputError, match="missing.png: cannot read"):
        encode_image(tmp_path / "missing.png")
    with pytest.raises(ImageInputError, match="empty"):
        encode_image(b"")
    with pytest.raises(ImageInputError, match="uint8"):
        encode_image(np.zeros((4, 4, 3), np.float32))


def test_request_shape_follows_max_batch_size():
    config = {
        "config": {
            "name": "acfd",
            "max_batch_size": 8,
            "input": [{"name": "IMAGE", "data_type": "TYPE_UINT8", "dims": ["-1"]}],
            "output": [{"name": "BOXES"}, {"name": "SCORES"}],
        }
    }
    assert input_spec_from_config(config, "acfd", "u") == InputSpec(batched=True)
    assert InputSpec(batched=True).shape(123) == [1, 123]
    del config["config"]["max_batch_size"]  # absent in the JSON form when 0
    assert input_spec_from_config(config, "acfd", "u") == InputSpec(batched=False)
    assert InputSpec(batched=False).shape(123) == [123]
    config["config"]["input"][0]["data_type"] = "TYPE_FP32"
    with pytest.raises(ModelNotReady, match="no UINT8 input 'IMAGE'"):
        input_spec_from_config(config, "acfd", "u")


def test_the_served_display_threshold_is_the_default_score_floor():
    config = {
        "config": {
            "max_batch_size": 8,
            "input": [{"name": "IMAGE", "data_type": "TYPE_UINT8"}],
            "output": [{"name": "BOXES"}, {"name": "SCORES"}],
            "parameters": {"display_threshold": {"string_value": "0.42"}},
        }
    }
    spec = input_spec_from_config(config, "acfd", "u")
    assert spec == InputSpec(batched=True, display_threshold=0.42)
    client = DetectorClient("127.0.0.1:1", min_score=None)
    assert client.score_floor(spec) == 0.42  # the model's own
    assert client.score_floor(spec, override=0.1) == 0.1  # a call's own
    assert client.score_floor(InputSpec(batched=True)) == 0.5  # a server that does not say
    assert DetectorClient("127.0.0.1:1", min_score=0.3).score_floor(spec) == 0.3
    assert DetectorClient("127.0.0.1:1").score_floor(spec) == 0.0  # the library default: everything


def test_detections_from_arrays_sorts_and_filters():
    boxes = np.array([[[0, 0, 10, 10], [5, 5, 20, 30], [1, 2, 3, 4]]], np.float32)  # [1, N, 4]
    scores = np.array([[0.2, 0.9, 0.05]], np.float32)
    dets = detections_from_arrays(boxes, scores, min_score=0.1)
    assert dets == [
        Detection((5.0, 5.0, 20.0, 30.0), pytest.approx(0.9)),
        Detection((0.0, 0.0, 10.0, 10.0), pytest.approx(0.2)),
    ]
    assert detections_from_arrays(np.zeros((0, 4)), np.zeros((0,))) == []
    with pytest.raises(ValueError, match="BOXES"):
        detections_from_arrays(np.zeros((3, 5)), np.zeros(3))


def test_draw_detections_outlines_box_and_keeps_input():
    image = np.zeros((60, 80, 3), np.uint8)
    out = draw_detections(image, [Detection((20.0, 30.0, 50.0, 55.0), 0.87)], color=(0, 255, 0))
    assert not image.any()
    assert tuple(out[42, 20]) == (0, 255, 0) and tuple(out[55, 35]) == (0, 255, 0)  # left and bottom edges
    assert not out[42, 35].any()  # inside stays untouched
    assert out[:30].any()  # score label drawn above the box


# ---- perf_analyzer ------------------------------------------------------------------------------
def test_input_data_json_holds_the_image_bytes(tmp_path):
    images = [b"\x89PNG first", b"second image bytes"]
    path = write_input_data(tmp_path / "in.json", images)
    data = json.loads(path.read_text())["data"]
    assert [base64.b64decode(entry["IMAGE"]["b64"]) for entry in data] == images
    assert [entry["IMAGE"]["shape"] for entry in data] == [[10], [18]]


def test_parse_concurrency():
    assert parse_concurrency("1:16:2") == [1, 3, 5, 7, 9, 11, 13, 15]
    assert parse_concurrency("1:4:1") == [1, 2, 3, 4]
    assert parse_concurrency("2:4") == [2, 3, 4]
    assert parse_concurrency("3") == [3]
    for bad in ("0:2", "4:1", "a:b", "1:2:0", "1:2:3:4"):
        with pytest.raises(ValueError, match="concurrency"):
            parse_concurrency(bad)


def test_parse_recorded_csv():
    (row,) = parse_csv(RECORDED_CSV)
    assert row.concurrency == 2
    assert row.throughput == pytest.approx(0.411824)
    assert (row.p50_ms, row.p90_ms, row.p95_ms, row.p99_ms) == pytest.approx((3757.861, 3836.325, 3836.325, 3836.325))
    assert row.avg_ms == pytest.approx(3171.889)
    assert row.server_queue_ms == pytest.approx(0.003)
    assert row.server_compute_ms == pytest.approx((37977 + 2174082 + 39095) / 1000)
    with pytest.raises(PerfAnalyzerError, match="not a perf_analyzer CSV"):
        parse_csv("a,b\n1,2\n")


def test_parse_recorded_stdout():
    composing = parse_composing(RECORDED_STDOUT)
    assert {m: t["latency"] for m, t in composing[2].items()} == {
        "detector": pytest.approx(2066.509),
        "postprocess": pytest.approx(15.122),
        "preprocess": pytest.approx(459.395),
    }
    assert composing[2]["postprocess"]["queue"] == pytest.approx(6.454)
    assert composing[2]["postprocess"]["compute"] == pytest.approx((475 + 5737 + 2448) / 1000)
    assert composing[2]["detector"]["compute"] == pytest.approx((10383 + 587096 + 270) / 1000)
    assert parse_request_counts(RECORDED_STDOUT) == {2: 3}
    assert last_error_line(RECORDED_FAILURE) == "Thread [0] had error: in ensemble 'acfd', cannot decode 19 bytes"
    assert last_error_line("error: failed to get model metadata: Request for unknown model") == (
        "failed to get model metadata: Request for unknown model"
    )


def test_missing_library_message(tmp_path):
    fake = tmp_path / "perf_analyzer"
    fake.write_text(
        "#!/bin/sh\necho 'perf_analyzer: error while loading shared libraries: libb64.so.0d: "
        "cannot open shared object file: No such file or directory' >&2\nexit 127\n"
    )
    fake.chmod(0o755)
    with pytest.raises(PerfAnalyzerError) as info:
        check_perf_analyzer(PerfAnalyzerInstall(fake, ()))
    assert "libb64.so.0d" in str(info.value) and "libb64-0d" in str(info.value)
    with pytest.raises(PerfAnalyzerError, match="cannot run"):
        check_perf_analyzer(PerfAnalyzerInstall(tmp_path / "absent", ()))
