"""The served ensemble against the in-process model, bad input, concurrency, and the launcher's errors.

Tests marked ``server`` talk to the real Triton Inference Server of the session fixture
(``conftest.py``) over gRPC; the others check ``acfd repo`` and the log reading without a server.
Run them alone with ``pytest -m server tests/serving``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

from acfd.serving.repo import RepoError, build_repository, max_batch_size
from acfd.serving.server import ServerConfig, ServerError, explain_failure, free_port, port_in_use

BOX_ATOL = 1e-2  # pixels: the same export and engine served and in process (thread counts may differ)
SCORE_ATOL = 1e-4


# ---- helpers ------------------------------------------------------------------------------------
def encode(image: np.ndarray, ext: str, params: tuple[int, ...] = ()) -> bytes:
    """Encode an RGB / RGBA / gray / 16-bit image the way a client's file would hold it."""
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    ok, buf = cv2.imencode(ext, image, list(params))
    assert ok, ext
    return buf.tobytes()


def image_input(data: bytes | np.ndarray, dtype: str = "UINT8"):
    import tritonclient.grpc as grpcclient

    array = np.frombuffer(data, np.uint8) if isinstance(data, bytes) else data
    array = array.reshape(1, -1)
    tensor = grpcclient.InferInput("IMAGE", list(array.shape), dtype)
    tensor.set_data_from_numpy(array)
    return tensor


def infer(url: str, data: bytes | np.ndarray, dtype: str = "UINT8") -> tuple[np.ndarray, np.ndarray]:
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(url) as client:
        result = client.infer("acfd", [image_input(data, dtype)], client_timeout=60)
    boxes, scores = result.as_numpy("BOXES"), result.as_numpy("SCORES")
    assert boxes.shape[0] == 1 and scores.shape[0] == 1  # one image per request
    return boxes[0], scores[0]


def png_bomb(side: int = 12000) -> bytes:
    """A valid, all-black ``side x side`` gray PNG: 144 MP for 12000, about 140 KB on disk."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    header = side.to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])  # 8-bit gray, no interlace
    packer = zlib.compressobj(9)
    row = bytes(side + 1)  # filter byte 0 + the row's pixels
    body = b"".join(packer.compress(row * 100) for _ in range(side // 100)) + packer.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def assert_same_detections(got: tuple[np.ndarray, np.ndarray], want: tuple[np.ndarray, np.ndarray], what: str) -> None:
    (got_boxes, got_scores), (want_boxes, want_scores) = got, want
    assert got_boxes.shape == want_boxes.shape, (
        f"{what}: {len(got_scores)} detections served, {len(want_scores)} in process"
    )
    np.testing.assert_allclose(got_scores, want_scores, rtol=0, atol=SCORE_ATOL, err_msg=what)
    np.testing.assert_allclose(got_boxes, want_boxes, rtol=0, atol=BOX_ATOL, err_msg=what)


# ---- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def scenes() -> list[np.ndarray]:
    from acfd.scenes.synth import generate_scene

    return [generate_scene(np.random.default_rng([7, i]), 320, 192)[0] for i in range(3)]


@pytest.fixture(scope="session")
def reference(serving):
    """In-process detections for encoded bytes: the served export and engine, same decode and
    post-processing (``InProcessPipeline``). One engine thread: the server's processes share the cores."""
    from acfd.inference.pipeline import InProcessPipeline

    pipeline = InProcessPipeline(serving.export_dir, threads=1)
    cache: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}

    def run(data: bytes) -> tuple[np.ndarray, np.ndarray]:
        if data not in cache:  # encoders are deterministic: the same bytes, the same answer
            cache[data] = pipeline(data)
        return cache[data]

    return run


# ---- served detections equal the in-process model ----------------------------------------------
@pytest.mark.server
def test_served_detections_match_in_process(serving, scenes, reference):
    rgba = np.dstack([scenes[1], np.full(scenes[1].shape[:2], 200, np.uint8)])
    deep = scenes[2].astype(np.uint16) * 257 + 100  # 16-bit, low byte differs from the high byte
    cases = {
        "png": encode(scenes[0], ".png"),
        "jpeg": encode(scenes[1], ".jpg", (cv2.IMWRITE_JPEG_QUALITY, 90)),
        "webp": encode(scenes[2], ".webp", (cv2.IMWRITE_WEBP_QUALITY, 90)),
        "bmp": encode(scenes[0], ".bmp"),
        "gray png": encode(cv2.cvtColor(scenes[1], cv2.COLOR_RGB2GRAY), ".png"),
        "rgba png": encode(rgba, ".png"),
        "16-bit png": encode(deep, ".png"),
    }
    counts = []
    for name, data in cases.items():
        want = reference(data)
        assert len(want[1]) > 0, f"{name}: the test model should detect something"
        assert_same_detections(infer(serving.url, data), want, name)
        counts.append(len(want[1]))
    assert max(counts) <= serving.preset.inference.max_detections


@pytest.mark.server
def test_boxes_are_in_original_pixels(serving, scenes):
    """The same scene at twice the size gives boxes about twice as large (mapped back per axis)."""
    small = scenes[0]
    boxes, scores = infer(serving.url, encode(small, ".png"))
    height, width = small.shape[:2]
    assert boxes.dtype == np.float32 and scores.dtype == np.float32
    assert np.all(boxes[:, [0, 2]] <= width) and np.all(boxes[:, [1, 3]] <= height) and np.all(boxes >= 0)
    assert np.all(np.diff(scores) <= 0)  # highest first
    assert np.all(scores > serving.preset.inference.score_threshold)


# ---- bad input fails alone ----------------------------------------------------------------------
def _bad_cases(scene: np.ndarray) -> dict[str, tuple[np.ndarray, str, str]]:
    jpeg = encode(scene, ".jpg")
    rng = np.random.default_rng(3)
    return {
        "random bytes": (rng.integers(0, 256, 5000, dtype=np.uint8), "UINT8", "cannot decode"),
        "empty": (np.zeros(0, np.uint8), "UINT8", "empty input"),
        "truncated jpeg": (np.frombuffer(jpeg[: len(jpeg) // 2], np.uint8), "UINT8", "cannot decode"),
        "1x1 image": (np.frombuffer(encode(np.zeros((1, 1, 3), np.uint8), ".png"), np.uint8), "UINT8", "smaller than"),
        "12000x12000 png": (np.frombuffer(png_bomb(), np.uint8), "UINT8", "12000x12000 image exceeds"),
        "wrong dtype": (np.frombuffer(encode(scene, ".png"), np.uint8).astype(np.float32), "FP32", "UINT8"),
    }


@pytest.mark.server
def test_bad_requests_fail_alone_while_good_ones_succeed(serving, scenes, reference):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    good = encode(scenes[0], ".png")
    want = reference(good)
    cases = _bad_cases(scenes[1])
    with grpcclient.InferenceServerClient(serving.url) as client:
        for name, (data, dtype, message) in cases.items():
            outcome: dict[str, object] = {}
            barrier = threading.Barrier(2)

            def send(key: str, payload, kind: str) -> None:
                barrier.wait()  # both requests leave together and meet in the same queues
                try:
                    result = client.infer("acfd", [image_input(payload, kind)], client_timeout=60)
                    outcome[key] = (result.as_numpy("BOXES")[0], result.as_numpy("SCORES")[0])
                except InferenceServerException as err:
                    outcome[key] = err

            threads = [
                threading.Thread(target=send, args=("bad", data, dtype)),
                threading.Thread(target=send, args=("good", good, "UINT8")),
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert isinstance(outcome["bad"], InferenceServerException), f"{name}: served without an error"
            assert message in outcome["bad"].message(), f"{name}: {outcome['bad'].message()}"
            assert "\n" not in outcome["bad"].message().strip(), f"{name}: multi-line error"
            # the caller's mistake, told apart from a server fault (INTERNAL) by its gRPC status
            assert outcome["bad"].status() == "StatusCode.INVALID_ARGUMENT", f"{name}: {outcome['bad'].status()}"
            assert not isinstance(outcome["good"], Exception), (
                f"good request next to {name!r} failed: {outcome['good']}"
            )
            assert_same_detections(outcome["good"], want, f"good request next to {name!r}")
        assert client.is_server_ready() and client.is_model_ready("acfd")


# ---- concurrency --------------------------------------------------------------------------------
@pytest.mark.server
def test_eight_threads_by_twenty_requests(serving, scenes, reference):
    import tritonclient.grpc as grpcclient

    payloads = [encode(scene, ".png") for scene in scenes]
    wants = [reference(p) for p in payloads]
    failures: list[str] = []

    def worker(thread: int) -> int:
        done = 0
        with grpcclient.InferenceServerClient(serving.url) as client:
            for i in range(20):
                k = (thread + i) % len(payloads)
                try:
                    result = client.infer("acfd", [image_input(payloads[k])], client_timeout=120)
                    assert_same_detections(
                        (result.as_numpy("BOXES")[0], result.as_numpy("SCORES")[0]), wants[k], f"scene {k}"
                    )
                    done += 1
                except Exception as err:  # collected, reported below with the thread and request
                    failures.append(f"thread {thread} request {i}: {err}")
        return done

    with ThreadPoolExecutor(8) as pool:
        done = sum(pool.map(worker, range(8)))
    assert not failures, failures[:3]
    assert done == 160
    with grpcclient.InferenceServerClient(serving.url) as client:
        assert client.is_server_ready() and client.is_model_ready("acfd")


# ---- the launcher -------------------------------------------------------------------------------
def _three_free_ports() -> list[int]:
    ports: set[int] = set()
    while len(ports) < 3:
        ports.add(free_port())
    return sorted(ports)


def _acfd(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "acfd", *args], capture_output=True, text=True, timeout=120, **kwargs)


@pytest.mark.server
def test_serve_reports_port_in_use_in_one_line(serving):
    busy = serving.server.config.grpc_port
    done = _acfd(
        "serve",
        "--model-repository",
        str(serving.repo),
        "--grpc-port",
        str(busy),
        "--http-port",
        str(free_port()),
        "--metrics-port",
        str(free_port()),
    )
    assert done.returncode != 0
    assert (
        done.stderr.strip() == f"acfd serve: gRPC port {busy} on 127.0.0.1 is in use (choose another with --grpc-port)"
    )


def test_serve_refuses_bad_watchdog_settings_in_one_line():
    done = _acfd("serve", "--hang-timeout", "0")
    assert done.returncode == 2 and done.stderr.strip() == "acfd serve: --hang-timeout must be > 0, got 0.0"
    done = _acfd("serve", "--health-port", "70000")
    assert done.returncode == 2 and "--health-port 70000: not a port number" in done.stderr


def _trivial_repo(root: Path, initialize: str = "pass") -> Path:
    """A repository with one python model named ``acfd`` that loads in a second (launcher tests)."""
    (root / "acfd" / "1").mkdir(parents=True)
    (root / "acfd" / "config.pbtxt").write_text(
        'backend: "python"\nmax_batch_size: 0\n'
        'input [ { name: "IMAGE" data_type: TYPE_UINT8 dims: [ -1 ] } ]\n'
        'output [ { name: "SCORES" data_type: TYPE_FP32 dims: [ -1 ] } ]\n'
    )
    (root / "acfd" / "1" / "model.py").write_text(
        "class TritonPythonModel:\n"
        "    def initialize(self, args):\n"
        f"        {initialize}\n"
        "    def execute(self, requests):\n"
        "        return []\n"
    )
    return root


def _skip_without_server() -> None:
    from acfd.serving.server import find_tritonserver

    try:
        find_tritonserver()
    except ServerError as err:
        pytest.fail(f"make setup installs this, so its absence is a broken setup, not a skip: {err}")


def _signal_a_helper_thread(pid: int, signum: int) -> None:
    """Deliver ``signum`` to a thread of ``pid`` other than the main one, where it is hardest to
    handle (the kernel may pick any thread for a process-wide signal); plain kill() if unsupported."""
    import ctypes

    helpers = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid)
    try:
        tgkill = ctypes.CDLL("libc.so.6", use_errno=True).tgkill
    except (OSError, AttributeError):
        helpers = []
    if not helpers or tgkill(pid, helpers[0], signum) != 0:
        os.kill(pid, signum)


@pytest.mark.server
def test_serve_starts_and_stops_cleanly_on_sigterm(tmp_path):
    """SIGTERM stops ``acfd serve`` and its server, even when a helper thread receives the signal."""
    _skip_without_server()
    ports = _three_free_ports()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "acfd",
            "serve",
            "--model-repository",
            str(_trivial_repo(tmp_path)),
            "--grpc-port",
            str(ports[0]),
            "--http-port",
            str(ports[1]),
            "--metrics-port",
            str(ports[2]),
            "--health-port",
            str(free_port()),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        for line in iter(proc.stdout.readline, ""):  # the launcher's own startup timeout bounds this
            lines.append(line)
            if line.startswith("Ctrl-C to stop"):
                break
        assert any(f"gRPC     127.0.0.1:{ports[0]}" in line for line in lines), "".join(lines) + proc.stderr.read()
        assert port_in_use("127.0.0.1", ports[0])
        _signal_a_helper_thread(proc.pid, signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"acfd serve did not stop within 60 s of SIGTERM: {out!r} {err!r}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "acfd serve: stopping ..." in out and "acfd serve: stopped (server exit code 0)" in out
    # not the ACFD interface: the watchdog watches the stub processes but sends no probes, and says so
    started = "".join(lines)
    assert "no probes, stub scan only" in started and "  health   http://127.0.0.1:" in started
    assert not any(port_in_use("127.0.0.1", p) for p in ports)  # the server is gone with its ports


@pytest.mark.server
def test_model_load_failure_names_the_model_and_the_reason(tmp_path):
    from acfd.serving.server import TritonServer

    _skip_without_server()
    _trivial_repo(tmp_path, initialize="raise FileNotFoundError('/nowhere/model.onnx: no ONNX model')")
    ports = _three_free_ports()
    config = ServerConfig(
        tmp_path, grpc_port=ports[0], http_port=ports[1], metrics_port=ports[2], log_file=tmp_path / "server.log"
    )
    server = TritonServer(config)
    with pytest.raises(ServerError) as info:
        server.start()
    assert str(info.value) == "model 'acfd' failed to load: FileNotFoundError: /nowhere/model.onnx: no ONNX model"
    assert not server.is_running()


def test_failure_reason_prefers_the_member_over_the_ensemble():
    log = [
        'E1128 14:07:12.343206 9201 server.cc:241] "CudaDriverHelper has not been initialized."',
        "E1128 14:07:14.429451 9201 model_lifecycle.cc:642] \"failed to load 'detector' version 1: Internal: "
        'ValueError: bad graph\\n\\nAt:\\n  /r/detector/1/model.py(5): initialize\\n"',
        "E1128 14:07:14.429640 9201 model_repository_manager.cc:703] \"Invalid argument: ensemble 'acfd' depends on "
        "'detector' which has no loaded version.\"",
        "E1128 14:07:14.5 9201 model_lifecycle.cc:642] \"failed to load 'acfd' version 1: Invalid argument: ensemble "
        "'acfd' depends on 'detector' which has no loaded version\"",
    ]
    config = ServerConfig(Path("repo"))
    assert explain_failure(log, 1, config, None) == "model 'detector' failed to load: ValueError: bad graph"
    port_log = [
        'E1128 14:06:02.463642 8090 main.cc:245] "failed to start GRPC service: Unavailable - Socket '
        "'127.0.0.1:18001' already in use \""
    ]
    assert explain_failure(port_log, 1, config, None) == "GRPC port 127.0.0.1:18001 is in use (choose another port)"


# ---- acfd repo ----------------------------------------------------------------------------------
def _fake_export(root: Path, tensorrt: dict | None, int8: bool = False, version: int | None = 2) -> Path:
    """An export folder with a real manifest (tiny preset, the serving test scales) and stand-in model files."""
    from acfd.training.config import load_preset
    from acfd.export.graph import build_manifest

    export = root / "export"
    export.mkdir()
    manifest = build_manifest(load_preset("tiny"), 17, tensorrt=tensorrt)
    manifest = manifest.replace(test_scales=((120, 161), (160, 215), (200, 269)),
                                int8={"file": "model.int8.onnx"} if int8 else None)  # fmt: skip
    data = manifest.to_dict()
    if version is None:
        del data["format_version"]
    else:
        data["format_version"] = version
    (export / "export.json").write_text(json.dumps(data))
    (export / "model.onnx").write_bytes(b"onnx")
    if int8:
        (export / "model.int8.onnx").write_bytes(b"int8")
    if tensorrt:
        (export / "model.plan").write_bytes(b"plan")
    return export


def _parameter(config: str, key: str) -> str:
    import re

    match = re.search(r'key:\s*"' + key + r'"\s*value:\s*\{\s*string_value:\s*"([^"]*)"', config)
    assert match, f"no parameter {key}"
    return match.group(1)


def _instances(config: str) -> int:
    import re

    return int(re.search(r"instance_group\s*\[\s*\{[^}]*?count:\s*(\d+)", config, re.S).group(1))


def test_repo_cpu_and_tensorrt_layouts(tmp_path):
    cpu = build_repository(_fake_export(tmp_path, None), tmp_path / "cpu", "cpu")
    assert (cpu / "detector" / "1" / "model.onnx").read_bytes() == b"onnx"
    assert (cpu / "detector" / "1" / "model.py").is_file()
    for model in ("preprocess", "detector", "postprocess", "acfd"):
        assert json.loads((cpu / model / "1" / "export.json").read_text())["preset"] == "tiny"
    assert not (cpu / "detector" / "config.tensorrt.pbtxt").exists()
    config = (cpu / "detector" / "config.pbtxt").read_text()
    assert (_parameter(config, "engine"), _parameter(config, "threads")) == ("openvino", "0")  # the default engine

    (tmp_path / "export").rename(tmp_path / "export_cpu")
    trt = build_repository(_fake_export(tmp_path, {"file": "model.plan", "max_batch": 4}), tmp_path / "trt", "tensorrt")
    config = (trt / "detector" / "config.pbtxt").read_text()
    assert 'platform: "tensorrt_plan"' in config and max_batch_size(config) == 4
    assert max_batch_size((trt / "acfd" / "config.pbtxt").read_text()) == 4  # never above a member's
    assert (trt / "detector" / "1" / "model.plan").read_bytes() == b"plan"
    assert not (trt / "detector" / "1" / "model.py").exists()


def test_repo_engine_threads_and_instances(tmp_path):
    export = _fake_export(tmp_path, None, int8=True)
    repo = build_repository(export, tmp_path / "r", "cpu", engine="onnxruntime-int8", threads=3,
                            instances={"preprocess": 1, "detector": 2})  # fmt: skip
    config = (repo / "detector" / "config.pbtxt").read_text()
    assert (_parameter(config, "engine"), _parameter(config, "threads")) == ("onnxruntime-int8", "3")
    assert (repo / "detector" / "1" / "model.int8.onnx").read_bytes() == b"int8"
    assert not (repo / "detector" / "1" / "model.onnx").exists()  # only the file the engine runs
    assert _instances(config) == 2 and _instances((repo / "preprocess" / "config.pbtxt").read_text()) == 1
    assert _instances((repo / "postprocess" / "config.pbtxt").read_text()) == 1  # the template's

    done = _acfd("repo", "--export", str(export), "--out", str(tmp_path / "cli"), "--engine", "onnxruntime",
                 "--threads", "1", "--instances", "preprocess=3")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "engine onnxruntime" in done.stdout
    assert _instances((tmp_path / "cli" / "preprocess" / "config.pbtxt").read_text()) == 3
    assert _parameter((tmp_path / "cli" / "detector" / "config.pbtxt").read_text(), "threads") == "1"


@pytest.mark.parametrize(
    "flags,needle",
    [
        (["--instances", "detector=0"], "want MODEL=N with N >= 1"),
        (["--instances", "acfd=2"], "model must be one of"),
        (["--engine", "onnxruntime-int8"], "no int8 model"),
        (["--threads", "-1"], "--threads -1"),
    ],
)
def test_repo_bad_engine_options_are_one_line(tmp_path, flags, needle):
    done = _acfd("repo", "--export", str(_fake_export(tmp_path, None)), "--out", str(tmp_path / "out"), *flags)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert needle in done.stderr


def test_repo_refuses_an_export_of_the_old_format(tmp_path):
    with pytest.raises(RepoError, match="export format 1, this acfd reads format 2 .* export the checkpoint again"):
        build_repository(_fake_export(tmp_path, None, version=None), tmp_path / "out", "cpu")


def test_repo_errors_are_one_line(tmp_path):
    with pytest.raises(RepoError, match="no TensorRT engine"):
        build_repository(_fake_export(tmp_path, None), tmp_path / "out", "tensorrt")
    done = _acfd("repo", "--export", str(tmp_path / "missing"), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == f"acfd repo: {tmp_path / 'missing'}: export directory not found (make one with `acfd export`)"
    )
