"""``acfd serve``: start NVIDIA Triton Inference Server on a model repository and keep it running.

Prints the endpoints once the ``acfd`` ensemble answers ready, then watches it: the watchdog
(``acfd.serving.watchdog``; the server runs in explicit model-control mode for it) repairs a model
whose stub process died or hangs and restarts a server that died, one line each, and the health
endpoints (``--health-port``, ``acfd.serving.health_http``) say whether to send traffic (ready) and
whether to restart the whole thing (live). Ctrl-C or SIGTERM stops the server cleanly (exit code 0).
A server that cannot start, or a watchdog that gives up, is reported in one line on stderr with a
non-zero exit code. ``--no-watchdog`` serves as before: the server's death ends ``acfd serve``.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from acfd.serving.repo_cli import DEFAULT_OUT
from acfd.serving.server import ServerConfig, ServerError, TritonServer, port_in_use
from acfd.serving.watchdog import RepairError, Watchdog, WatchdogConfig
from tritonclient.utils import InferenceServerException


class _Stop(BaseException):
    """Raised in the main thread by the SIGINT / SIGTERM handler."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-repository", default=DEFAULT_OUT, metavar="REPO", help="model repository built by `acfd repo`"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (0.0.0.0 exposes the server to the network)"
    )
    parser.add_argument("--grpc-port", type=int, default=8001, help="gRPC port")
    parser.add_argument("--http-port", type=int, default=8000, help="HTTP/REST port")
    parser.add_argument("--metrics-port", type=int, default=8002, help="Prometheus metrics port")
    parser.add_argument("--model", default="acfd", help="model that must be ready before the endpoints are printed")
    parser.add_argument(
        "--startup-timeout", type=float, default=300.0, help="seconds to wait for the model to be ready"
    )
    parser.add_argument(
        "--log-file",
        type=Path,
        default=None,
        help="write the server's log to this file (None: a temporary file, kept when the server fails)",
    )
    parser.add_argument("--verbose", action="store_true", help="echo the server's log to stderr")
    parser.add_argument(
        "--health-port", type=int, default=8003, help="port of /health/ready and /health/live (0: none)"
    )
    parser.add_argument(
        "--no-watchdog", action="store_true", help="no probes, no repairs, no health endpoints (the old behaviour)"
    )
    defaults = WatchdogConfig()
    parser.add_argument(
        "--probe-every", type=float, default=defaults.probe_every_s, metavar="S", help="seconds between probes"
    )
    parser.add_argument(
        "--hang-timeout",
        type=float,
        default=defaults.hang_timeout_s,
        metavar="S",
        help="a probe unanswered this long, with a model completing nothing, means that model hangs "
        "(keep it above the slowest batch the detector runs)",
    )
    parser.add_argument(
        "--recycle-above",
        type=float,
        default=defaults.recycle_orphaned_mb,
        metavar="MB",
        help="shared memory of crashed stubs the server may hold before a repair restarts the whole server "
        "instead of reloading one model (each crash leaves 5-30 MB behind; 0: at every repair)",
    )


def run(args: argparse.Namespace) -> int:
    for name in ("grpc_port", "http_port", "metrics_port", "health_port"):
        port = getattr(args, name)
        if not 1 <= port <= 65535 and not (name == "health_port" and port == 0):
            print(f"acfd serve: --{name.replace('_', '-')} {port}: not a port number (1-65535)", file=sys.stderr)
            return 2
    for flag, value in (("--probe-every", args.probe_every), ("--hang-timeout", args.hang_timeout)):
        if value <= 0:
            print(f"acfd serve: {flag} must be > 0, got {value}", file=sys.stderr)
            return 2
    if args.recycle_above < 0:
        print(f"acfd serve: --recycle-above must be >= 0 MB, got {args.recycle_above}", file=sys.stderr)
        return 2
    watch = not args.no_watchdog
    config = ServerConfig(
        model_repository=Path(args.model_repository),
        host=args.host,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        metrics_port=args.metrics_port,
        ready_model=args.model,
        startup_timeout_s=args.startup_timeout,
        log_file=args.log_file,
        echo_log=(lambda line: print(line, file=sys.stderr, flush=True)) if args.verbose else None,
        model_control="explicit" if watch else "none",
    )
    server = TritonServer(config)
    watchdog = Watchdog(
        server,
        WatchdogConfig(
            probe_every_s=args.probe_every, hang_timeout_s=args.hang_timeout, recycle_orphaned_mb=args.recycle_above
        ),
        log=lambda line: print(f"acfd serve: {line}", flush=True),
    )
    health = None
    if watch and args.health_port:
        if args.health_port in (args.grpc_port, args.http_port, args.metrics_port) or port_in_use(
            args.host, args.health_port
        ):
            print(
                f"acfd serve: health port {args.health_port} on {args.host} is in use "
                "(choose another with --health-port)",
                file=sys.stderr,
            )
            return 1
        from acfd.serving.health_http import HealthServer

        health = HealthServer(watchdog.health, args.host, args.health_port).start()  # "starting" until ready

    def handler(signum, frame):
        raise _Stop(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(f"acfd serve: starting Triton Inference Server on {config.model_repository} ...", flush=True)
        server.start()
        if watch:
            watchdog.attach()
        lines = [
            f"acfd serve: model {config.ready_model!r} ready in {server.startup_s:.1f} s",
            f"  gRPC     {server.grpc_url}",
            f"  HTTP     http://{server.http_url}",
            f"  metrics  {server.metrics_url}",
        ]
        if health is not None:
            lines.append(f"  health   http://{server.client_host}:{health.port}/health/ready, /health/live")
        lines.append(f"  log      {server.log_path}")
        watching = f"on (probe every {args.probe_every:g} s, hang timeout {args.hang_timeout:g} s)"
        lines += [f"  watchdog {watching if watch else 'off'}", "Ctrl-C to stop."]
        print("\n".join(lines), flush=True)
        if not watch:
            code = server.wait()
            print(f"acfd serve: {server.failure_reason(code)}", file=sys.stderr)
            return 1
        watchdog.run()  # returns only when it gives up
        print(f"acfd serve: {watchdog.health()['live_reason']}", file=sys.stderr)
        return 1
    except ServerError as err:
        print(f"acfd serve: {err}", file=sys.stderr)
        return 1
    except _Stop:
        print("acfd serve: stopping ...", flush=True)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        code = server.stop()
        print(f"acfd serve: stopped (server exit code {code})", flush=True)
        return 0
    except (InferenceServerException, RepairError) as err:  # the first probe, or the server while attaching
        print(f"acfd serve: the watchdog could not start: {' '.join(str(err).split())}", file=sys.stderr)
        return 1
    finally:
        watchdog.stop()
        server.stop()
        if health is not None:
            health.stop()
        for sig, old in previous.items():
            signal.signal(sig, old)
