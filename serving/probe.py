"""What the watchdog asks the server: one small request through the served model, and its counters.

Contract:

* ``ServedModel.read(client, model)`` reads the served model's config once: its members in the order
  the ensemble runs them (the model itself when it is no ensemble), which of them run in
  python-backend stub processes and how many instances each has, and whether it has the ACFD
  interface (UINT8 ``IMAGE`` in, ``BOXES`` and ``SCORES`` out) that a probe needs.
* ``Probe.send(client, served)`` sends one probe image (a small PNG) without a gRPC deadline (a
  deadline that cancels a request can crash Triton 2.51, issue 7368 of
  triton-inference-server/server) and returns at once; ``done`` / ``error`` say how it ended and
  ``age`` how long it has been out.
* ``counters(client)`` reads every model's completed, failed and executed request counts from the
  server's statistics (``ModelStatistics``), the evidence used to tell which member hangs or fails.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass

import numpy as np

PROBE_SIDE = 64  # px: above the preprocess model's smallest side, tiny next to a real image
STUB_UNHEALTHY = re.compile(r"Stub process '([^']+)' is not healthy")


@dataclass(frozen=True)
class ServedModel:
    name: str
    members: tuple[str, ...]  # in step order; (name,) for a model that is no ensemble
    stub_counts: dict[str, int]  # python-backend models -> instances (stub processes) expected
    probe_ok: bool  # the ACFD interface: a probe image can be sent
    batched: bool  # max_batch_size > 0: IMAGE is [1, nbytes]

    @classmethod
    def read(cls, client, model: str, timeout_s: float = 30.0) -> "ServedModel":
        config = client.get_model_config(model, as_json=True, client_timeout=timeout_s).get("config", {})
        members: list[str] = []
        for step in config.get("ensemble_scheduling", {}).get("step", []):
            if step["model_name"] not in members:
                members.append(step["model_name"])
        stub_counts = {}
        for member in members or [model]:
            member_config = (
                config
                if member == model
                else client.get_model_config(member, as_json=True, client_timeout=timeout_s).get("config", {})
            )
            if member_config.get("backend") == "python":
                groups = member_config.get("instance_group") or [{}]
                stub_counts[member] = sum(int(g.get("count", 1) or 1) for g in groups)
        inputs = {i.get("name"): i.get("data_type") for i in config.get("input", [])}
        outputs = {o.get("name") for o in config.get("output", [])}
        probe_ok = inputs.get("IMAGE") == "TYPE_UINT8" and {"BOXES", "SCORES"} <= outputs
        batched = int(config.get("max_batch_size", 0) or 0) > 0
        return cls(model, tuple(members) or (model,), stub_counts, probe_ok, batched)


def probe_image() -> bytes:
    """A small PNG with some structure (a gradient and a disc), the same bytes every time."""
    import cv2

    ramp = np.linspace(0, 255, PROBE_SIDE, dtype=np.uint8)
    image = np.full((PROBE_SIDE, PROBE_SIDE, 3), 128, np.uint8)
    image[..., 0] = ramp[None, :]
    image[..., 1] = ramp[:, None]
    cv2.circle(image, (PROBE_SIDE // 2, PROBE_SIDE // 2), PROBE_SIDE // 4, (250, 220, 190), -1)
    ok, png = cv2.imencode(".png", image)
    return png.tobytes()


class Probe:
    """One probe request in flight."""

    def __init__(self, before: dict[str, "Counters"]):
        self.before = before  # every model's counters when it was sent
        self.started = time.monotonic()
        self.error: str | None = None
        self._done = threading.Event()

    @classmethod
    def send(cls, client, served: ServedModel, data: bytes, before: dict[str, "Counters"]) -> "Probe":
        import tritonclient.grpc as grpcclient

        probe = cls(before)
        array = np.frombuffer(data, np.uint8)
        array = array.reshape(1, -1) if served.batched else array
        tensor = grpcclient.InferInput("IMAGE", list(array.shape), "UINT8")
        tensor.set_data_from_numpy(array)

        def answered(result, error) -> None:
            if error is not None:
                text = error.message() if callable(getattr(error, "message", None)) else str(error)
                probe.error = " ".join(str(text).split()).rstrip(".")
            probe._done.set()

        try:
            client.async_infer(served.name, [tensor], answered)
        except Exception as err:  # the channel itself failed: an answer of its own
            probe.error = " ".join(str(err).split())
            probe._done.set()
        return probe

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def age(self) -> float:
        return time.monotonic() - self.started

    def wait(self, timeout_s: float) -> bool:
        return self._done.wait(timeout_s)

    def unhealthy_instance(self) -> str | None:
        """The stub the server itself named as not healthy in the error, if it did."""
        match = STUB_UNHEALTHY.search(self.error or "")
        return match.group(1) if match else None


@dataclass(frozen=True)
class Counters:
    done: int  # requests completed (success + fail)
    failed: int
    executions: int


def counters(client, timeout_s: float = 10.0) -> dict[str, Counters]:
    stats = client.get_inference_statistics("", as_json=True, client_timeout=timeout_s)
    out: dict[str, Counters] = {}
    for entry in stats.get("model_stats", []):
        inference = entry.get("inference_stats", {})
        ok = int(inference.get("success", {}).get("count", 0))
        failed = int(inference.get("fail", {}).get("count", 0))
        previous = out.get(entry["name"], Counters(0, 0, 0))  # one entry per version: add them up
        out[entry["name"]] = Counters(
            previous.done + ok + failed,
            previous.failed + failed,
            previous.executions + int(entry.get("execution_count", 0)),
        )
    return out


def stuck_member(served: ServedModel, before: dict[str, Counters], now: dict[str, Counters]) -> str | None:
    """The member a probe is stuck in: the first, in step order, that completed nothing since it was sent.

    Members ahead of the stuck one completed at least the probe's own step; members behind it
    may be idle for want of input. A member busy with other requests keeps completing them, so a
    slow but working server names nobody (None)."""
    for member in served.members:
        if now.get(member, Counters(0, 0, 0)).done <= before.get(member, Counters(0, 0, 0)).done:
            return member
    return None


def failing_member(served: ServedModel, before: dict[str, Counters], now: dict[str, Counters]) -> str | None:
    """The first member, in step order, whose failure count rose since ``before``."""
    for member in served.members:
        if now.get(member, Counters(0, 0, 0)).failed > before.get(member, Counters(0, 0, 0)).failed:
            return member
    return None
