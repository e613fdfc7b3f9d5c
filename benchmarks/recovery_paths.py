"""How long a repair takes, the watchdog's way against the plain alternative, on the same repository.

    .venv/bin/python benchmarks/recovery_paths.py OUT [--rounds 3] [--weights CKPT]

The alternative to repairing one model is restarting the whole server (what a supervisor or a
Kubernetes liveness probe does): every model loads again. Interleaved, ``--rounds`` times:

1. *model reload* (the watchdog of ``acfd serve``): one stub of each model killed in turn, timed
   from the kill until Triton's ``/v2/health/ready`` is back and an image is answered;
2. *server restart*: the ``tritonserver`` process killed, timed from the kill until a new server on
   the same repository answers ready and an image is answered (the watchdog restarts it).

Writes ``OUT/recovery_paths.json`` and prints the times per path and model. The export and the
repository are made (and reused) as by ``benchmarks/soak_faults.py``. A benchmark: it measures.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from soak_faults import DEFAULT_WEIGHTS, build_repository, ready  # noqa: E402


def time_until_answered(server, client, image: bytes, since: float, timeout_s: float = 300.0) -> float | None:
    """Seconds from ``since`` until readiness is back and ``image`` is answered."""
    went_down = False
    while time.monotonic() - since < timeout_s:
        ok = ready(server.http_url) and server.is_running()
        went_down |= not ok
        if ok and went_down:
            outcome = client.detect_outcome(image)
            if outcome.ok:
                return time.monotonic() - since
        time.sleep(0.05)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        print("recovery_paths: --rounds must be >= 1", file=sys.stderr)
        return 2
    if str(HERE.parent) not in sys.path:
        sys.path.insert(0, str(HERE.parent))
    from acfd.clients.grpc_client import DetectorClient
    from acfd.serving.probe import probe_image
    from acfd.serving.server import ServerConfig, TritonServer, free_port
    from acfd.serving.stubs import stub_processes
    from acfd.serving.watchdog import Watchdog

    args.out.mkdir(parents=True, exist_ok=True)
    repo = build_repository(args.weights, args.out)
    ports: set[int] = set()
    while len(ports) < 3:
        ports.add(free_port())
    grpc, http, metrics = sorted(ports)
    config = ServerConfig(repo, grpc_port=grpc, http_port=http, metrics_port=metrics, model_control="explicit",
                          log_file=args.out / "tritonserver.log")  # fmt: skip
    server = TritonServer(config).start()
    watchdog = Watchdog(server, log=lambda line: print(f"watchdog: {line}", flush=True)).start()
    image = probe_image()
    times: dict[str, list[float | None]] = {}
    try:
        with DetectorClient(server.grpc_url, deadline_s=300) as client:
            for round_ in range(args.rounds):
                for model in ("preprocess", "detector", "postprocess"):
                    victim = next(s for s in stub_processes(server.pid) if s.model == model)
                    killed = time.monotonic()
                    os.kill(victim.pid, signal.SIGKILL)
                    times.setdefault(f"model reload: {model}", []).append(
                        time_until_answered(server, client, image, killed)
                    )
                    time.sleep(2)
                killed = time.monotonic()
                os.kill(server.pid, signal.SIGKILL)
                times.setdefault("server restart", []).append(time_until_answered(server, client, image, killed))
                time.sleep(2)
                print(f"round {round_ + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items() if v[-1]))
    finally:
        watchdog.stop()
        server.stop()
    summary = {
        path: {"seconds": values, "median_s": statistics.median([v for v in values if v is not None] or [0.0])}
        for path, values in times.items()
    }
    (args.out / "recovery_paths.json").write_text(json.dumps(summary, indent=1) + "\n")
    for path, entry in summary.items():
        shown = ", ".join("never" if v is None else f"{v:.1f}" for v in entry["seconds"])
        print(f"{path:28s} median {entry['median_s']:5.1f} s   ({shown})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
