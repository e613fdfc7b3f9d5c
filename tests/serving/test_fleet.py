"""Two servers and a hang: ``acfd detect`` over two real servers, one killed mid-run, answers every
image exactly as one server does; a detector that hangs is taken out and is back in service within
10 s of its deadline; the deployment's autoscaler metric is made of series the server publishes.

The second server serves a copy of the session's repository (``conftest.py``) whose detector is
wrapped by a test model that hangs, once and for good, inside ``execute`` when a ``HANG`` file
appears in its version folder (the stub process stays alive and answers Triton's health checks:
what a deadlock looks like). Without that file it is the served detector itself.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from acfd.cli import main as acfd_main
from acfd.clients.grpc_client import DetectorClient, encode_image

pytestmark = pytest.mark.server

HANG_TIMEOUT_S = 3.0  # the watchdog's deadline on this server
BACK_WITHIN_S = 10.0
HANGING_DETECTOR = '''"""Test model: the served detector; it hangs for good in execute() once a HANG file appears."""
import importlib.util
import time
from pathlib import Path

_spec = importlib.util.spec_from_file_location("served_detector", Path(__file__).with_name("served_model.py"))
_served = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_served)


class TritonPythonModel(_served.TritonPythonModel):
    def initialize(self, args):
        self.hang_flag = Path(args["model_repository"]) / args["model_version"] / "HANG"
        super().initialize(args)

    def execute(self, requests):
        try:
            self.hang_flag.unlink()
        except FileNotFoundError:
            return super().execute(requests)
        while True:
            time.sleep(1)
'''


@pytest.fixture(scope="module")
def second(serving, watched_server, tmp_path_factory):
    """A second watched server on a copy of the session's repository with the hanging detector."""
    repo = tmp_path_factory.mktemp("second") / "repo"
    shutil.copytree(serving.repo, repo)
    version = repo / "detector" / "1"
    (version / "model.py").rename(version / "served_model.py")
    (version / "model.py").write_text(HANGING_DETECTOR)
    # exit timeout 3 s: a hung detector's old instance never finishes unloading, and the stop waits for it
    server, watchdog = watched_server(repo, exit_timeout_s=3, hang_timeout_s=HANG_TIMEOUT_S)
    try:
        yield server, watchdog, version / "HANG"
    finally:
        watchdog.stop()
        server.stop()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    from acfd.scenes.synth import generate_scene

    root = tmp_path_factory.mktemp("fleet_images") / "scenes"
    root.mkdir()
    for i in range(24):
        scene = generate_scene(np.random.default_rng([31, i]), 200, 128)[0]
        cv2.imwrite(str(root / f"scene{i:02d}.png"), cv2.cvtColor(scene, cv2.COLOR_RGB2BGR))
    return root


def detect_records(capsys, *args: str) -> tuple[int, list[dict], str]:
    code = acfd_main(["detect", *args, "--json", "--min-score", "0", "--concurrency", "2"])
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    for record in records:
        record.pop("latency_ms")
    return code, records, captured.err


def answered_by(url: str) -> int:
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(url) as client:
        stats = client.get_inference_statistics("acfd", as_json=True, client_timeout=10)
    return sum(int(s["inference_stats"].get("success", {}).get("count", 0)) for s in stats["model_stats"])


def answered_by_or_none(url: str) -> int | None:
    from tritonclient.utils import InferenceServerException

    try:
        return answered_by(url)
    except InferenceServerException:
        return None


def test_detect_over_two_servers_with_one_killed_mid_run(serving, second, folder, capsys):
    server_b, watchdog_b, _ = second
    code, alone, _ = detect_records(capsys, str(folder), "--url", serving.url)
    assert code == 0 and len(alone) == 24 and any(r["faces"] for r in alone)

    before = answered_by(server_b.grpc_url)
    killed = threading.Event()

    def kill_b_once_it_answers() -> None:  # the second server dies with requests of the run in flight
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and answered_by(server_b.grpc_url) < before + 3:
            time.sleep(0.02)
        os.kill(server_b.pid, signal.SIGKILL)
        killed.set()

    killer = threading.Thread(target=kill_b_once_it_answers)
    killer.start()
    code, both, err = detect_records(capsys, str(folder), "--url", f"{serving.url},{server_b.grpc_url}")
    killer.join()
    assert killed.is_set()
    assert code == 0, err
    assert both == alone  # every image once, in order, with the same detections
    shares = err.strip().splitlines()[-1]
    assert f"{server_b.grpc_url}: " in shares and f"{server_b.grpc_url}: 0" not in shares, shares


def test_a_hung_detector_is_back_within_10_s_of_its_deadline(second, folder):
    from urllib.error import HTTPError
    from urllib.request import urlopen

    server_b, watchdog_b, hang_flag = second
    deadline = time.monotonic() + 120  # the previous test killed this server: its watchdog restarts it
    while not (watchdog_b.ready and answered_by_or_none(server_b.grpc_url) is not None):
        assert time.monotonic() < deadline, watchdog_b.health()
        time.sleep(0.2)
    images = [encode_image(path) for path in sorted(folder.glob("*.png"))[:8]]
    samples: list[tuple[float, bool]] = []  # (time, Triton's /v2/health/ready)
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            try:
                with urlopen(f"http://{server_b.http_url}/v2/health/ready", timeout=2) as answer:
                    samples.append((time.monotonic(), answer.status == 200))
            except (HTTPError, OSError):
                samples.append((time.monotonic(), False))
            stop.wait(0.05)

    poller = threading.Thread(target=poll)
    with DetectorClient(server_b.grpc_url, timeout_s=HANG_TIMEOUT_S + BACK_WITHIN_S, deadline_s=60) as client:
        undisturbed = client.detect_many(images, concurrency=2)
        repairs_before = len(watchdog_b.repairs)
        poller.start()
        hang_flag.touch()
        hung_at = time.monotonic()
        try:
            got = client.detect_many(images, concurrency=2)  # a request hangs in the detector, then is retried
        finally:
            stop.set()
            poller.join()
    assert not hang_flag.exists(), "the detector never ran a request after the HANG file appeared"
    assert got == undisturbed
    assert len(watchdog_b.repairs) > repairs_before, watchdog_b.health()
    repair = watchdog_b.repairs[-1]
    assert repair.what == "detector" and "hangs" in repair.cause, repair
    down = next(t for t, ready in samples if t >= hung_at and not ready)
    up = next((t for t, ready in samples if t > down and ready), None)
    assert up is not None and up - down <= BACK_WITHIN_S, f"not ready for {None if up is None else up - down} s"
    assert down - hung_at <= HANG_TIMEOUT_S + watchdog_b.config.probe_every_s + 1.0  # found by its deadline
    print(f"hang: found after {down - hung_at:.1f} s, back {up - down:.1f} s later (repair took {repair.took_s:.1f} s)")


def test_the_autoscalers_series_are_what_the_server_publishes(serving):
    """deploy/k8s/prometheus-adapter.yaml builds the HPA's metric from Triton series: they exist."""
    import re
    import urllib.request

    import yaml

    adapter = yaml.safe_load((Path(__file__).resolve().parents[2] / "deploy/k8s/prometheus-adapter.yaml").read_text())
    (rule,) = yaml.safe_load(adapter["data"]["config.yaml"])["rules"]
    wanted = set(re.findall(r"\b(nv_[a-z_]+)\{", rule["seriesQuery"] + rule["metricsQuery"]))
    assert wanted == {"nv_inference_queue_duration_us", "nv_inference_request_success"}
    with urllib.request.urlopen(serving.server.metrics_url, timeout=10) as answer:
        text = answer.read().decode()
    for name in wanted:
        assert re.search(rf'^{name}\{{[^}}]*model="detector"', text, re.M), f"{name} of the detector not published"
