"""Repairs on the real server of the session (``conftest.py``, watched as ``acfd serve`` watches it):
each model's stub process killed in the middle of a client's run. Readiness (what a load balancer
polls: Triton's ``/v2/health/ready``, and the watchdog's own verdict) goes false, then true within
10 s of the kill; with the client's retries every image of the run is answered exactly once, with
the detections of an undisturbed run. Also the health endpoints of ``acfd serve`` over HTTP."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from dataclasses import replace

import numpy as np
import pytest

from acfd.clients.detections import Detection
from acfd.clients.grpc_client import DetectorClient, encode_image
from acfd.serving.stubs import stub_processes

pytestmark = pytest.mark.server

BACK_WITHIN_S = 10.0  # the bound, from the kill to ready again
IMAGES = 16


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return -1  # nothing answers


class ReadinessLog:
    """Triton's /v2/health/ready and the watchdog's verdict, polled every 50 ms in a thread."""

    def __init__(self, serving):
        self.url = f"http://{serving.server.http_url}/v2/health/ready"
        self.watchdog = serving.watchdog
        self.samples: list[tuple[float, bool, bool]] = []  # (time, triton ready, watchdog ready)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), http_status(self.url) == 200, self.watchdog.ready))
            self._stop.wait(0.05)

    def __enter__(self) -> "ReadinessLog":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def down_and_up(self, since: float, which: int) -> tuple[float | None, float | None]:
        """Seconds from ``since`` to the first not-ready sample, and to the first ready one after it."""
        down = next((t for t, *ready in self.samples if t >= since and not ready[which]), None)
        if down is None:
            return None, None
        up = next((t for t, *ready in self.samples if t > down and ready[which]), None)
        return down - since, (up - since) if up is not None else None


@pytest.fixture(scope="module")
def images() -> list[bytes]:
    from acfd.scenes.synth import generate_scene

    return [encode_image(generate_scene(np.random.default_rng([23, i]), 224, 144)[0]) for i in range(IMAGES)]


def as_tuples(detections: list[Detection]) -> list[tuple]:
    return [(tuple(round(v, 2) for v in d.box), round(d.score, 4)) for d in detections]


def wait_ready(serving, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not serving.watchdog.ready:
        assert time.monotonic() < deadline, f"the server is not ready: {serving.watchdog.health()}"
        time.sleep(0.1)


def kill_mid_run(serving, images: list[bytes], model: str):
    """Kill one stub of ``model`` while a client runs over ``images``; check that readiness went false
    and was back within 10 s, and that every image was answered once, as undisturbed. The victim."""
    wait_ready(serving)
    with DetectorClient(serving.url, timeout_s=30, deadline_s=60, backoff_s=0.1) as client:
        undisturbed = [as_tuples(d) for d in client.detect_many(images, concurrency=2)]
        assert any(undisturbed), "the test model should detect something"
        outcomes, answered = [], threading.Event()

        def run() -> None:
            for outcome in client.stream(images, concurrency=2):
                outcomes.append(outcome)
                if len(outcomes) == 3:
                    answered.set()

        runner = threading.Thread(target=run)
        with ReadinessLog(serving) as readiness:
            runner.start()
            assert answered.wait(60), "the run did not start"
            victim = next(s for s in stub_processes(serving.server.pid) if s.model == model)
            killed_at = time.monotonic()
            os.kill(victim.pid, signal.SIGKILL)  # what the out-of-memory killer does
            runner.join(120)
            assert not runner.is_alive(), "the run did not finish"
            deadline = killed_at + BACK_WITHIN_S + 5
            while time.monotonic() < deadline and not (readiness.samples and all(readiness.samples[-1][1:])):
                time.sleep(0.1)
    for which, name in ((0, "Triton's /v2/health/ready"), (1, "the watchdog")):
        down, up = readiness.down_and_up(killed_at, which)
        assert down is not None, f"{name} never answered not-ready after {victim.instance} was killed"
        assert up is not None and up <= BACK_WITHIN_S, f"{name}: down after {down:.1f} s, ready again after {up} s"
    assert [o.index for o in outcomes] == list(range(IMAGES))  # every image once, in order
    failed = [str(o.error) for o in outcomes if not o.ok]
    assert not failed, failed[:2]
    assert [as_tuples(o.detections) for o in outcomes] == undisturbed
    return victim


@pytest.mark.parametrize("model", ["preprocess", "detector", "postprocess"])
def test_a_killed_model_is_back_within_10_s_and_no_image_is_lost(serving, images, model):
    victim = kill_mid_run(serving, images, model)
    repair = serving.watchdog.repairs[-1]
    assert repair.what == model and victim.instance in repair.cause and repair.took_s < BACK_WITHIN_S


def test_past_the_memory_limit_a_crash_gets_a_new_server_process(serving, images):
    """A killed stub's shared memory stays mapped in tritonserver; past ``recycle_orphaned_mb`` of it
    (here 0: the first crash) the watchdog restarts the server instead of reloading the model, and the
    new process holds none of it. The clients see the same as with a reload: nothing lost."""
    watchdog = serving.watchdog
    default = watchdog.config
    old_pid = serving.server.pid
    watchdog.config = replace(default, recycle_orphaned_mb=0.0)
    try:
        victim = kill_mid_run(serving, images, "detector")
    finally:
        watchdog.config = default
    repair = watchdog.repairs[-1]
    assert repair.what == "tritonserver" and victim.instance in repair.cause and "shared memory" in repair.cause
    assert repair.took_s < BACK_WITHIN_S
    assert serving.server.pid != old_pid
    assert watchdog.orphaned_mb() == 0.0
    assert watchdog.health()["live"]  # a planned restart is not a step towards giving up


def test_health_endpoints_answer_over_http(serving):
    from acfd.serving.health_http import HealthServer
    from acfd.serving.server import free_port

    wait_ready(serving)
    health = HealthServer(serving.watchdog.health, port=free_port()).start()
    try:
        base = f"http://127.0.0.1:{health.port}"
        with urllib.request.urlopen(f"{base}/health/ready", timeout=5) as answer:
            assert answer.status == 200 and json.load(answer) == {"ready": True, "reason": "ok"}
        with urllib.request.urlopen(f"{base}/health/live", timeout=5) as answer:
            assert answer.status == 200 and json.load(answer)["live"] is True
        with urllib.request.urlopen(f"{base}/health", timeout=5) as answer:
            assert isinstance(json.load(answer)["repairs"], list)
        assert http_status(f"{base}/nowhere") == 404
    finally:
        health.stop()
