"""A closed-loop load from the client library: ``concurrency`` workers, each sending the next image as
soon as its previous one is answered, for a fixed time.

Contract:

* ``run_load(client, images, concurrency, seconds)`` drives a ``DetectorClient`` (one server or
  several: requests spread as the client spreads them) and returns one ``Sent`` per image sent, in
  the order they finished: when it started (seconds from the start of the run), its latency
  (retries included), the image's index, whether it was answered (after retries), the error's class
  and message when not, the server that answered, the attempts it took and its detections.
* ``level_result(sent, concurrency, seconds)`` summarises a run as a ``LevelResult`` (throughput,
  latency percentiles), so a client-driven sweep writes the same report as a perf_analyzer one.
* ``stop`` (a ``threading.Event``) ends the run early; every request under way is still answered.

Used by ``acfd loadtest`` over several servers and by ``benchmarks/soak_faults.py``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from acfd.clients.detections import Detection
from acfd.clients.perf_analyzer import LevelResult


@dataclass(frozen=True)
class Sent:
    started_s: float  # from the start of the run
    latency_s: float
    image: int  # index into the images
    ok: bool
    error_kind: str | None  # the ClientError's class name
    error: str | None
    server: str | None
    attempts: int
    detections: list[Detection] | None


def run_load(
    client,
    images: Sequence[bytes],
    concurrency: int,
    seconds: float,
    stop: threading.Event | None = None,
    on_sent: Callable[[Sent], None] | None = None,
) -> list[Sent]:
    """Send ``images`` round-robin from ``concurrency`` workers for ``seconds`` (or until ``stop``)."""
    if concurrency < 1 or seconds <= 0 or not images:
        raise ValueError("need concurrency >= 1, seconds > 0 and at least one image")
    client.check_ready()
    stop = stop or threading.Event()
    start = time.monotonic()
    end = start + seconds
    sent: list[Sent] = []
    lock = threading.Lock()
    counter = iter(range(1 << 62))

    def worker() -> None:
        while not stop.is_set() and time.monotonic() < end:
            with lock:
                k = next(counter) % len(images)
            began = time.monotonic()
            outcome = client.detect_outcome(images[k], index=k)
            record = Sent(
                started_s=began - start,
                latency_s=time.monotonic() - began,
                image=k,
                ok=outcome.ok,
                error_kind=type(outcome.error).__name__ if outcome.error else None,
                error=str(outcome.error) if outcome.error else None,
                server=outcome.server,
                attempts=outcome.attempts,
                detections=outcome.detections,
            )
            with lock:
                sent.append(record)
            if on_sent is not None:
                on_sent(record)

    threads = [threading.Thread(target=worker, name=f"acfd-load-{i}", daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sent


def level_result(sent: Sequence[Sent], concurrency: int, seconds: float) -> LevelResult:
    """Throughput (answered images per second) and latency percentiles (answered images, ms)."""
    latencies = np.array([s.latency_s for s in sent if s.ok], dtype=np.float64) * 1000.0
    if latencies.size == 0:
        return LevelResult(concurrency, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, requests=len(sent), stable=False)
    p50, p90, p95, p99 = (float(np.percentile(latencies, q)) for q in (50, 90, 95, 99))
    return LevelResult(
        concurrency=concurrency,
        throughput=latencies.size / seconds,
        p50_ms=p50,
        p90_ms=p90,
        p95_ms=p95,
        p99_ms=p99,
        avg_ms=float(latencies.mean()),
        requests=len(sent),
    )
