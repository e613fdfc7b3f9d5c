"""Soak with faults: serve the default repository for MINUTES at concurrency 8 while a random model's
stub process is killed (SIGKILL, what the out-of-memory killer does) every FAULT_EVERY seconds.

    .venv/bin/python benchmarks/soak_faults.py OUT [--minutes 10] [--concurrency 8] [--fault-every 60]
        [--weights CKPT] [--images 16] [--seed 0] [--recycle-above MB | --no-recycle]

1. ``acfd export`` the weights (the embedded model by default) and ``acfd repo`` its default
   repository into ``OUT`` (kept and reused when already there);
2. serve it as ``acfd serve`` does (explicit model control, the watchdog in this process) on free
   loopback ports; answer ``--images`` generated scenes once, undisturbed: the reference detections;
3. for ``--minutes``: ``--concurrency`` client workers (``DetectorClient``, its default retries and
   deadline) send the scenes in a closed loop; every ``--fault-every`` s (the first after half of
   it) one stub of a model drawn at random is killed, and Triton's ``/v2/health/ready`` is polled
   every 0.1 s to time the fault until ready again; the RSS of the server and its stubs, and the
   shared memory of dead stubs the server still maps, are sampled every 5 s. The watchdog runs with
   ``acfd serve``'s defaults: past ``--recycle-above`` MB of such orphaned memory a repair restarts
   the server instead of reloading one model (``--no-recycle``: never, to see the memory grow);
4. write ``OUT/soak.json`` (requests sent, answered, failed after the client's retries, answers
   that differ from the reference, retries, every fault with its recovery time, RSS over time) and
   ``OUT/soak.png`` (answers per second, recovery times, RSS), and print the summary.

A benchmark, not a test: it measures and reports; nothing here asserts. Exit code 0 when it ran.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build_repository(weights: Path, out: Path) -> Path:
    export, repo = out / "export", out / "repo"
    if not (export / "export.json").is_file():
        subprocess.run([sys.executable, "-m", "acfd", "export", "--weights", str(weights), "--out", str(export)],
                       check=True)  # fmt: skip
    if not (repo / "acfd" / "config.pbtxt").is_file():
        subprocess.run([sys.executable, "-m", "acfd", "repo", "--export", str(export), "--out", str(repo)], check=True)
    return repo


def rss_mb(server_pid: int, shm_prefix: str = "") -> dict[str, float]:
    """Resident memory of the server process and of its stub processes, in MB; of the server's, how
    much is shared memory of stubs that died."""
    from acfd.serving.stubs import orphaned_regions, stub_processes

    def rss(pid: int) -> float:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        except OSError:
            pass
        return 0.0

    stubs = stub_processes(server_pid)
    server, members = rss(server_pid), sum(rss(s.pid) for s in stubs)
    orphaned = sum(orphaned_regions(server_pid, shm_prefix, stubs).values()) / 2**20
    return {
        "server_mb": server,
        "stubs_mb": members,
        "total_mb": server + members,
        "stub_count": len(stubs),
        "orphaned_shm_mb": orphaned,
    }


def ready(http_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{http_url}/v2/health/ready", timeout=2) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False


class FaultInjector(threading.Thread):
    """Every ``every_s`` (the first after half of it): SIGKILL one stub of a random model, and time
    the fault until Triton's readiness is back."""

    def __init__(self, server, models: list[str], every_s: float, seed: int, started: float, stop: threading.Event):
        super().__init__(name="soak-faults", daemon=True)
        self.server, self.models, self.every_s = server, models, every_s
        self.rng, self.started, self.stop_event = random.Random(seed), started, stop
        self.faults: list[dict] = []

    def run(self) -> None:
        from acfd.serving.stubs import stub_processes

        next_at = self.started + self.every_s / 2
        while not self.stop_event.wait(max(0.0, next_at - time.monotonic())):
            next_at += self.every_s
            model = self.rng.choice(self.models)
            stubs = [s for s in stub_processes(self.server.pid) if s.model == model and s.alive]
            if not stubs:
                continue
            victim = self.rng.choice(stubs)
            killed = time.monotonic()
            os.kill(victim.pid, signal.SIGKILL)
            down = back = None
            while time.monotonic() - killed < 60 and not self.stop_event.is_set():
                ok = ready(self.server.http_url)
                if down is None and not ok:
                    down = time.monotonic()
                if down is not None and ok:
                    back = time.monotonic()
                    break
                time.sleep(0.1)
            fault = {
                "at_s": round(killed - self.started, 2), "model": model, "instance": victim.instance,
                "not_ready_after_s": None if down is None else round(down - killed, 2),
                "ready_again_after_s": None if back is None else round(back - killed, 2),
            }  # fmt: skip
            self.faults.append(fault)
            print(f"fault at {fault['at_s']:.0f} s: killed {victim.instance}; ready again after "
                  f"{fault['ready_again_after_s']} s", flush=True)  # fmt: skip


def soak(args: argparse.Namespace) -> dict:
    import numpy as np

    from acfd.clients.grpc_client import DetectorClient
    from acfd.clients.load_generator import run_load
    from acfd.scenes.synth import scene_png
    from acfd.serving.server import ServerConfig, TritonServer, free_port
    from acfd.serving.watchdog import Watchdog, WatchdogConfig

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    repo = build_repository(args.weights, out)
    ports: set[int] = set()
    while len(ports) < 3:
        ports.add(free_port())
    grpc, http, metrics = sorted(ports)
    config = ServerConfig(repo, grpc_port=grpc, http_port=http, metrics_port=metrics, model_control="explicit",
                          log_file=out / "tritonserver.log")  # fmt: skip
    server = TritonServer(config).start()
    repairs_log = []
    watchdog = Watchdog(
        server,
        WatchdogConfig(recycle_orphaned_mb=None if args.no_recycle else args.recycle_above),
        log=lambda line: (repairs_log.append(line), print(f"watchdog: {line}", flush=True)),
    )
    watchdog.start()
    images = [scene_png(np.random.default_rng((args.seed, i)), 640, 384) for i in range(args.images)]
    rss: list[dict] = []
    stop = threading.Event()
    try:
        with DetectorClient(server.grpc_url) as client:
            reference = client.detect_many(images, concurrency=2)
            started, started_at = time.monotonic(), time.time()
            faults = FaultInjector(server, sorted(watchdog.served.stub_counts), args.fault_every, args.seed,
                                   started, stop)  # fmt: skip

            def sample_rss() -> None:
                while not stop.is_set():
                    if server.is_running():
                        rss.append({"t_s": round(time.monotonic() - started, 1),
                                    **rss_mb(server.pid, server.shm_prefix)})  # fmt: skip
                    stop.wait(5.0)

            sampler = threading.Thread(target=sample_rss, daemon=True)
            sampler.start()
            faults.start()
            sent = run_load(client, images, args.concurrency, args.minutes * 60.0)
            stop.set()
            faults.join(70)
            sampler.join(10)
    finally:
        stop.set()
        watchdog.stop()
        server.stop()
    wrong = sum(1 for s in sent if s.ok and s.detections != reference[s.image])
    answered = sum(s.ok for s in sent)
    return {
        "config": {
            "minutes": args.minutes,
            "concurrency": args.concurrency,
            "fault_every_s": args.fault_every,
            "images": args.images,
            "weights": str(args.weights),
            "seed": args.seed,
            "recycle_above_mb": None if args.no_recycle else args.recycle_above,
        },  # fmt: skip
        "started_at": started_at,
        "sent": len(sent),
        "answered": answered,
        "failed_after_retries": len(sent) - answered,
        "failures": sorted({f"{s.error_kind}: {s.error}" for s in sent if not s.ok})[:10],
        "answers_unlike_the_reference": wrong,
        "retried_requests": sum(1 for s in sent if s.attempts > 1),
        "extra_attempts": sum(s.attempts - 1 for s in sent),
        "throughput_per_s": answered / (args.minutes * 60.0),
        "faults": faults.faults,
        "repairs": [r for r in watchdog.health()["repairs"]],
        "watchdog_log": repairs_log,
        "rss": rss,
        "timeline": [[round(s.started_s + s.latency_s, 2), s.ok, s.attempts] for s in sent],
    }


def plot(result: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax_t, ax_r, ax_m) = plt.subplots(3, 1, figsize=(9, 10))
    done = np.array([t for t, ok, _ in result["timeline"] if ok])
    failed = np.array([t for t, ok, _ in result["timeline"] if not ok])
    span = result["config"]["minutes"] * 60.0
    bins = np.arange(0, span + 10, 10)
    ax_t.hist(done, bins=bins, weights=np.full(done.shape, 0.1), color="tab:blue", label="answered / s (10 s bins)")
    if failed.size:
        ax_t.hist(failed, bins=bins, weights=np.full(failed.shape, 0.1), color="tab:red", label="failed after retries")
    for fault in result["faults"]:
        ax_t.axvline(fault["at_s"], color="tab:orange", lw=1)
    ax_t.set_xlabel("seconds (orange: a stub killed)")
    ax_t.set_ylabel("images / s")
    ax_t.legend(loc="lower right")
    ax_t.set_title(
        f"{result['sent']} sent, {result['failed_after_retries']} failed after retries, "
        f"{result['answers_unlike_the_reference']} unlike the reference"
    )
    labels = [f"{f['at_s']:.0f}s\n{f['model']}" for f in result["faults"]]
    times = [f["ready_again_after_s"] or 0.0 for f in result["faults"]]
    ax_r.bar(range(len(times)), times, color="tab:green")
    ax_r.axhline(10.0, color="tab:red", ls="--", lw=1, label="10 s")
    ax_r.set_xticks(range(len(times)), labels, fontsize=7)
    ax_r.set_ylabel("kill to ready again (s)")
    ax_r.legend()
    t = [r["t_s"] for r in result["rss"]]
    for key, label in (
        ("total_mb", "server + stubs"),
        ("server_mb", "tritonserver"),
        ("stubs_mb", "stubs"),
        ("orphaned_shm_mb", "tritonserver: dead stubs' shared memory"),
    ):
        ax_m.plot(t, [r.get(key, 0.0) for r in result["rss"]], label=label)
    for restart in server_restarts(result):
        ax_m.axvline(restart, color="tab:gray", ls=":", lw=1)
    ax_m.set_xlabel("seconds (dotted: tritonserver restarted to give memory back)")
    ax_m.set_ylabel("RSS (MB)")
    ax_m.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def server_restarts(result: dict) -> list[float]:
    """Seconds into the run at which the watchdog restarted the whole server."""
    start = result.get("started_at", 0.0)
    return [round(r["at"] - start, 1) for r in result["repairs"] if r["what"] == "tritonserver"]


def summary_lines(result: dict) -> list[str]:
    recoveries = [f["ready_again_after_s"] for f in result["faults"] if f["ready_again_after_s"] is not None]
    # samples with every stub up (a sample taken during a reload misses the model being reloaded)
    most = max((r["stub_count"] for r in result["rss"]), default=0)
    rss = [r["total_mb"] for r in result["rss"] if r["stub_count"] == most]
    warm = rss[len(rss) // 5 :] or rss  # after the first fifth of the run
    lines = [
        f"soak: {result['config']['minutes']:g} min at concurrency {result['config']['concurrency']}, "
        f"a stub killed every {result['config']['fault_every_s']:g} s",
        f"  sent {result['sent']}, answered {result['answered']}, failed after retries "
        f"{result['failed_after_retries']}, answers unlike the reference {result['answers_unlike_the_reference']}, "
        f"retried {result['retried_requests']} ({result['extra_attempts']} extra attempts), "
        f"{result['throughput_per_s']:.1f} images/s",
        f"  faults {len(result['faults'])}: kill to ready again "
        + (
            f"{min(recoveries):.1f}-{max(recoveries):.1f} s (mean {sum(recoveries) / len(recoveries):.1f})"
            if recoveries
            else "none measured"
        )  # fmt: skip
        + "; never back: "
        + str(sum(f["ready_again_after_s"] is None for f in result["faults"])),
    ]
    if warm:
        lines.append(
            f"  RSS server + stubs (all {most} stubs up) after warm-up: {min(warm):.0f}-{max(warm):.0f} MB, "
            f"first {rss[0]:.0f} MB, last {rss[-1]:.0f} MB"
        )
        server = [r["server_mb"] for r in result["rss"] if r["stub_count"] == most]
        server_warm = server[len(server) // 5 :] or server
        lines.append(
            f"  tritonserver RSS after warm-up: {min(server_warm):.0f}-{max(server_warm):.0f} MB "
            f"(first {server[0]:.0f}, last {server[-1]:.0f}); dead stubs' shared memory at most "
            f"{max(r.get('orphaned_shm_mb', 0.0) for r in result['rss']):.0f} MB; server restarted to give it back "
            f"{len(server_restarts(result))} times (recycle above {result['config']['recycle_above_mb']} MB)"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder for the export, repository, soak.json and soak.png")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--fault-every", type=float, default=60.0, metavar="S")
    parser.add_argument("--weights", type=Path, default=None, help="default: the embedded model")
    parser.add_argument("--images", type=int, default=16, help="generated 640x384 scenes sent in turn")
    parser.add_argument("--seed", type=int, default=0)
    from acfd.serving.watchdog import WatchdogConfig

    recycle = parser.add_mutually_exclusive_group()
    recycle.add_argument("--recycle-above", type=float, default=WatchdogConfig().recycle_orphaned_mb, metavar="MB",
                         help="as acfd serve --recycle-above")  # fmt: skip
    recycle.add_argument("--no-recycle", action="store_true", help="never restart the server to give memory back")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.concurrency < 1 or args.fault_every <= 0 or args.images < 1:
        print("soak_faults: --minutes, --fault-every > 0, --concurrency, --images >= 1", file=sys.stderr)
        return 2
    if args.weights is None:
        from acfd.weights import DEFAULT_WEIGHTS

        args.weights = DEFAULT_WEIGHTS
    result = soak(args)
    (args.out / "soak.json").write_text(json.dumps(result, indent=1) + "\n")
    plot(result, args.out / "soak.png")
    lines = summary_lines(result) + [f"  wrote {args.out / 'soak.json'}, {args.out / 'soak.png'}"]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    raise SystemExit(main())
