"""Several servers and repairs, without a real Triton server: which server gets a request, which
failures are retried, how the watchdog names a culprit, the stub process scan and the health
endpoints. (On the real server: tests/serving/test_recovery.py and test_fleet.py.)"""

from __future__ import annotations

import json
import mmap
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from tritonclient.utils import InferenceServerException

from acfd.cli import main as acfd_main
from acfd.clients.detections import Detection
from acfd.clients.errors import DetectTimeout, InvalidRequest, ServerFault, inference_retryable
from acfd.clients.grpc_client import DetectorClient
from acfd.clients.pool import ServerPool, parse_urls
from acfd.serving.probe import Counters, ServedModel, failing_member, stuck_member
from acfd.serving.stubs import orphaned_regions, parse_stub_command, shm_mappings, stub_processes
from fake_triton import FakeTriton

ANSWER = [Detection(FakeTriton.BOX, pytest.approx(0.75))]


# ---- the pool -----------------------------------------------------------------------------------
def test_parse_urls_splits_commas_and_drops_repeats():
    assert parse_urls("a:1, b:2,a:1") == ["a:1", "b:2"]
    assert parse_urls(["a:1", "c:3,b:2"]) == ["a:1", "c:3", "b:2"]
    with pytest.raises(ValueError, match="no server address"):
        parse_urls(" , ")


def test_pool_picks_the_least_outstanding_and_takes_ties_in_turn():
    pool = ServerPool(["a", "b", "c"])
    first = [pool.pick().url for _ in range(3)]
    assert first == ["a", "b", "c"]  # all at 0 outstanding: in turn
    a = pool.endpoints[0]
    pool.succeeded(a)  # a has 0 outstanding, b and c have 1
    assert pool.pick() is a


def test_a_failed_server_cools_down_then_is_checked_before_use():
    pool = ServerPool(["a", "b"], backoff_s=0.05)
    a, b = pool.endpoints
    assert pool.pick() is a
    pool.failed(a, "INTERNAL")
    assert [pool.pick() for _ in range(2)] == [b, b]  # a is cooling down
    pool.succeeded(b)
    pool.succeeded(b)
    time.sleep(0.06)
    picked = pool.pick()
    assert picked is a and a.checking  # its cool-down is over: the caller asks it whether it is ready
    pool.checked(a, ok=True)
    pool.succeeded(a)
    assert not a.suspect and a.failures == 0
    only_a = ServerPool(["a"], backoff_s=0.05)
    a = only_a.endpoints[0]
    only_a.pick()
    only_a.failed(a, "gone")
    assert only_a.pick() is None and 0 < only_a.wait_s() <= 0.05
    time.sleep(0.06)
    assert only_a.pick() is a and a.checking  # the caller must ask it first
    only_a.checked(a, ok=False, why="not ready")
    assert only_a.pick() is None and 0.05 < only_a.wait_s() <= 0.1  # cooling down twice as long


def test_failures_of_requests_already_in_flight_do_not_lengthen_the_cool_down():
    pool = ServerPool(["a"], backoff_s=0.05)
    a = pool.endpoints[0]
    in_flight = [pool.pick() for _ in range(8)]  # concurrency 8 on one server, then it breaks
    for endpoint in in_flight:
        pool.failed(endpoint, "INTERNAL: Stub process 'detector_0_0' is not healthy")
    assert a.outstanding == 0 and a.failures == 1 and a.failed_attempts == 8
    assert 0 < pool.wait_s() <= 0.05  # one failure's cool-down, not eight doublings
    time.sleep(0.06)
    assert pool.pick() is a and a.checking
    pool.checked(a, ok=False, why="not ready")  # a failure after the cool-down does double it
    assert 0.05 < pool.wait_s() <= 0.1


# ---- what is retried ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "status, retried",
    [("UNAVAILABLE", True), ("INTERNAL", True), ("UNKNOWN", True), ("NOT_FOUND", True),
     ("DEADLINE_EXCEEDED", True), ("INVALID_ARGUMENT", False), ("UNIMPLEMENTED", False),
     ("PERMISSION_DENIED", False)],
)  # fmt: skip
def test_inference_retries_what_a_repair_cures_never_the_callers_mistake(status, retried):
    assert inference_retryable(InferenceServerException(msg="x", status=f"StatusCode.{status}")) is retried
    assert inference_retryable(DetectTimeout("x")) is True
    assert inference_retryable(InvalidRequest("x")) is False


def test_a_dead_model_is_retried_until_repaired():
    message = "in ensemble 'acfd', Stub process 'detector_0_0' is not healthy."
    with FakeTriton(failing=3, code="INTERNAL", message=message) as fake:
        with DetectorClient(fake.url, backoff_s=0.01) as client:
            outcome = client.detect_outcome(b"image bytes")
    assert outcome.ok and outcome.detections == ANSWER and outcome.attempts == 4 and fake.infer_calls == 4


def test_retries_stop_at_the_deadline_with_the_servers_reason():
    with FakeTriton(failing=1000, code="INTERNAL", message="still broken") as fake:
        with DetectorClient(fake.url, backoff_s=0.01, retries=1000, deadline_s=0.5) as client:
            started = time.monotonic()
            with pytest.raises(ServerFault, match="still broken.*gave up after"):
                client.detect(b"image bytes")
    assert time.monotonic() - started < 5


def test_bad_input_is_not_retried_even_with_another_server():
    with FakeTriton(failing=1, code="INVALID_ARGUMENT", message="cannot decode") as bad, FakeTriton() as good:
        with DetectorClient([bad.url, good.url], backoff_s=0.01) as client:
            client.check_ready()
            client.pool.endpoints[1].outstanding = 5  # make the first server the one chosen
            with pytest.raises(InvalidRequest, match="cannot decode"):
                client.detect(b"junk")
    assert bad.infer_calls == 1 and good.infer_calls == 0


# ---- several servers ----------------------------------------------------------------------------
def test_requests_spread_and_a_failing_server_is_skipped():
    with FakeTriton(delay_s=0.05) as a, FakeTriton(delay_s=0.05) as b:
        with DetectorClient([a.url, b.url]) as client:
            outcomes = list(client.stream([b"x"] * 20, concurrency=4))
        assert all(o.ok for o in outcomes) and [o.index for o in outcomes] == list(range(20))
        assert a.infer_calls >= 5 and b.infer_calls >= 5 and a.infer_calls + b.infer_calls == 20
    with FakeTriton(failing=1000, code="UNAVAILABLE", message="going away") as down, FakeTriton() as up:
        with DetectorClient([down.url, up.url], backoff_s=0.5) as client:
            outcomes = list(client.stream([b"x"] * 12, concurrency=2))
        assert all(o.ok and o.server == up.url for o in outcomes)
        assert down.infer_calls <= 2  # tried, then left to cool down while the other answers
        assert client.pool.shares() == {down.url: 0, up.url: 12}


def test_an_unready_server_gets_no_traffic_until_it_is_ready_again():
    with FakeTriton(failing=1, code="INTERNAL", message="stub died") as flaky, FakeTriton(delay_s=0.02) as other:
        with DetectorClient([flaky.url, other.url], backoff_s=0.05) as client:
            client.check_ready()
            client.detect_many([b"x"] * 2, concurrency=2)  # one request meets the failure, is retried
            flaky.ready = False  # being repaired: its readiness says so
            calls = flaky.infer_calls
            time.sleep(0.1)
            client.detect_many([b"x"] * 6, concurrency=2)
            assert flaky.infer_calls == calls  # asked, found unready, skipped
            flaky.ready = True
            deadline = time.monotonic() + 15  # its cool-down has doubled with each check it failed
            while flaky.infer_calls == calls and time.monotonic() < deadline:
                client.detect_many([b"x"] * 2, concurrency=2)
                time.sleep(0.05)
            assert flaky.infer_calls > calls  # back in the rotation


def test_detect_cli_takes_several_urls_and_says_who_answered(tmp_path, capsys):
    import cv2
    import numpy as np

    for i in range(4):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((16, 16, 3), 40 * i, np.uint8))
    with FakeTriton() as a, FakeTriton() as b:
        code = acfd_main(["detect", str(tmp_path), "--url", a.url, "--url", b.url, "--json", "--concurrency", "2"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert [json.loads(line)["faces"] for line in captured.out.splitlines()] == [1, 1, 1, 1]
    assert f"answered by {a.url}: " in captured.err and f", {b.url}: " in captured.err


def test_detect_cli_with_no_server_up_is_one_line(tmp_path, capsys):
    from fake_triton import free_port

    image = tmp_path / "a.png"
    image.write_bytes(b"\x89PNG")
    urls = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    assert acfd_main(["detect", str(image), "--url", ",".join(urls)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("acfd detect: no server is ready") and all(u in err[0] for u in urls)


# ---- the watchdog's evidence --------------------------------------------------------------------
SERVED = ServedModel("acfd", ("preprocess", "detector", "postprocess"), {"preprocess": 2}, True, True)


def counts(**done_failed) -> dict[str, Counters]:
    return {name: Counters(done, failed, done) for name, (done, failed) in done_failed.items()}


def test_the_stuck_member_is_the_first_that_completed_nothing():
    before = counts(preprocess=(10, 0), detector=(30, 0), postprocess=(10, 0))
    # the probe went through preprocess, then waits in the detector: nothing after it moves either
    assert stuck_member(SERVED, before, counts(preprocess=(11, 0), detector=(30, 0), postprocess=(10, 0))) == "detector"
    # busy, not stuck: every member completes other requests
    assert stuck_member(SERVED, before, counts(preprocess=(19, 0), detector=(55, 0), postprocess=(18, 0))) is None
    # an idle server whose first member hangs
    assert stuck_member(SERVED, before, before) == "preprocess"


def test_the_failing_member_is_the_first_whose_failures_rose():
    before = counts(preprocess=(10, 1), detector=(30, 0), postprocess=(10, 0))
    now = counts(preprocess=(11, 1), detector=(31, 1), postprocess=(10, 1))
    assert failing_member(SERVED, before, now) == "detector"
    assert failing_member(SERVED, before, before) is None


def test_stub_command_lines_name_the_model_and_instance():
    argv = [
        "/tmp/w/backends/python/triton_python_backend_stub", "/srv/repo/detector/1/model.py",
        "acfd_1_x_3f2e", "1048576", "1048576", "4242", "/tmp/w/backends/python", "336", "detector_0_0", "DEFAULT",
    ]  # fmt: skip
    assert parse_stub_command(argv) == ("detector", "detector_0_0", "acfd_1_x_3f2e")
    assert parse_stub_command(["/usr/bin/python3", "-c", "pass", "x"]) is None


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="no /dev/shm")
def test_orphaned_regions_are_the_mapped_ones_no_live_stub_uses(tmp_path):
    """This process plays the server: it maps two regions in /dev/shm; a child started as a stub
    (its command line as Triton starts one) uses the first. The second is orphaned; once the stub is
    killed, both are, with the bytes this process touched in each."""
    prefix = f"acfd_test_{os.getpid()}_"
    names = [prefix + "a", prefix + "b"]
    maps = []
    stub_link = tmp_path / "triton_python_backend_stub"
    stub_link.symlink_to(sys.executable)
    model_py = tmp_path / "repo" / "detector" / "1" / "model.py"
    model_py.parent.mkdir(parents=True)
    model_py.write_text("import time\ntime.sleep(60)\n")
    stub = None
    try:
        for name, pages in zip(names, (2, 3)):
            with open(f"/dev/shm/{name}", "w+b") as f:
                f.truncate(16 * 4096)
                region = mmap.mmap(f.fileno(), 16 * 4096)
            region[: pages * 4096] = b"x" * (pages * 4096)  # resident: the pages touched
            maps.append(region)
        argv = [str(stub_link), str(model_py), names[0], "1048576", "1048576", str(os.getpid()), "/x", "336",
                "detector_0_0", "DEFAULT"]  # fmt: skip
        stub = subprocess.Popen(argv)
        deadline = time.monotonic() + 10
        while not stub_processes(os.getpid()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [(s.model, s.instance, s.region) for s in stub_processes(os.getpid())] == [
            ("detector", "detector_0_0", names[0])
        ]
        assert shm_mappings(os.getpid())[names[1]] == 3 * 4096
        assert orphaned_regions(os.getpid(), prefix) == {names[1]: 3 * 4096}
        stub.kill()
        stub.wait()
        assert orphaned_regions(os.getpid(), prefix) == {names[0]: 2 * 4096, names[1]: 3 * 4096}
        assert orphaned_regions(os.getpid(), "someone_else_") == {}
    finally:
        if stub is not None and stub.poll() is None:
            stub.kill()
        for region in maps:
            region.close()
        for name in names:
            Path(f"/dev/shm/{name}").unlink(missing_ok=True)


# ---- the health endpoints -----------------------------------------------------------------------
def test_health_endpoints_say_wait_or_restart_me():
    from acfd.serving.health_http import HealthServer

    state = {"live": True, "live_reason": "ok", "ready": False, "ready_reason": "repairing detector", "repairs": []}
    health = HealthServer(lambda: dict(state), port=0).start()

    def get(path: str) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{health.port}{path}", timeout=5) as answer:
                return answer.status, json.load(answer)
        except urllib.error.HTTPError as err:
            return err.code, json.load(err)

    try:
        assert get("/health/ready") == (503, {"ready": False, "reason": "repairing detector"})
        assert get("/health/live") == (200, {"live": True, "reason": "ok"})  # wait: do not restart
        state.update(live=False, live_reason="giving up")
        assert get("/health/live") == (503, {"live": False, "reason": "giving up"})  # restart me
        assert get("/health")[0] == 200 and get("/nope")[0] == 404
    finally:
        health.stop()


def test_async_client_spreads_over_two_servers_and_retries_a_dead_model():
    import asyncio

    from acfd.clients.aio_client import AsyncDetectorClient

    async def go(urls: list[str]):
        async with AsyncDetectorClient(urls, backoff_s=0.01) as client:
            return [o async for o in client.stream([b"x"] * 10, concurrency=4)]

    with FakeTriton(delay_s=0.05, failing=2, code="INTERNAL", message="stub died") as a, FakeTriton(delay_s=0.05) as b:
        outcomes = asyncio.run(go([a.url, b.url]))
    assert [o.index for o in outcomes] == list(range(10)) and all(o.detections == ANSWER for o in outcomes)
    assert {o.server for o in outcomes} == {a.url, b.url} and sum(o.attempts for o in outcomes) == 12


def test_loadtest_over_two_servers_is_driven_by_the_client(tmp_path, capsys):
    with FakeTriton(delay_s=0.01) as a, FakeTriton(delay_s=0.01) as b:
        code = acfd_main([
            "loadtest", "--url", f"{a.url},{b.url}", "--concurrency", "1:2:1", "--seconds", "0.5", "--images", "2",
            "--size", "64x64", "--no-local", "--out", str(tmp_path),
        ])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    shares = summary["settings"]["answered_by"]
    assert shares[a.url] > 0 and shares[b.url] > 0
    assert [level["concurrency"] for level in summary["levels"]] == [1, 2]
    assert "answered by" in printed and "images failed after the client's retries: 0" in printed
