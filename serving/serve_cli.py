"""``acfd serve``: start NVIDIA Triton Inference Server on a model repository and keep it running.

Prints the endpoints once the ``acfd`` ensemble answers ready, then waits; Ctrl-C or SIGTERM stops
the server cleanly (exit code 0). A server that cannot start, or dies, is reported in one line on
stderr with a non-zero exit code (see ``acfd.serving.server``).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from acfd.serving.repo_cli import DEFAULT_OUT
from acfd.serving.server import ServerConfig, ServerError, TritonServer


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


def run(args: argparse.Namespace) -> int:
    for name in ("grpc_port", "http_port", "metrics_port"):
        port = getattr(args, name)
        if not 1 <= port <= 65535:
            print(f"acfd serve: --{name.replace('_', '-')} {port}: not a port number (1-65535)", file=sys.stderr)
            return 2
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
    )
    server = TritonServer(config)

    def handler(signum, frame):
        raise _Stop(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(f"acfd serve: starting Triton Inference Server on {config.model_repository} ...", flush=True)
        server.start()
        print(
            f"acfd serve: model {config.ready_model!r} ready in {server.startup_s:.1f} s\n"
            f"  gRPC     {server.grpc_url}\n"
            f"  HTTP     http://{server.http_url}\n"
            f"  metrics  {server.metrics_url}\n"
            f"  log      {server.log_path}\n"
            f"Ctrl-C to stop.",
            flush=True,
        )
        code = server.wait()
        print(f"acfd serve: {server.failure_reason(code)}", file=sys.stderr)
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
    finally:
        server.stop()
        for sig, old in previous.items():
            signal.signal(sig, old)
