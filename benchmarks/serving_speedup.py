"""Today's serving against an earlier revision's, same checkpoint, same scenes, same windows, one run.

    .venv/bin/python benchmarks/serving_speedup.py OUT [--base 409d860] [--weights CKPT]
        [--concurrency 1:4:1] [--seconds 5] [--images 8] [--repo-args "--instances preprocess=1"]

1. ``git archive`` the base revision into ``OUT/base/src`` (the checkout's package layout rebuilt
   with symbolic links, so ``PYTHONPATH`` makes ``import acfd`` that revision's code);
2. with the base code: ``acfd export`` and ``acfd repo`` (its defaults) into ``OUT/base``; with
   this checkout: ``acfd export`` and ``acfd repo`` (its defaults, plus ``--repo-args``) into
   ``OUT/new``, both from the same ``--weights``;
3. serve each repository in turn on free loopback ports (the base server's python models import
   the base code: the server inherits ``PYTHONPATH``) and run this checkout's ``acfd loadtest`` on it
   with the same settings (the new repository also with its in-process yardstick);
4. write ``OUT/comparison.json`` and print best throughput, p50 at concurrency 1 and the
   per-model compute times of both, and the ratio new / base.

The default base, 409d860, is the last revision before issue 14: ONNX Runtime float32, float32
tensors between the ensemble's models, and NMS over every candidate.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
PACKAGE_DIRS = ("training", "kernels", "clients", "serving")  # acfd.X lives in X/ (pyproject's package-dir)


def snapshot(revision: str, dest: Path) -> Path:
    """The tree of ``revision`` in ``dest`` with ``acfd/X`` linked to ``X/`` for each package dir."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile() as archive:
        subprocess.run(["git", "-C", str(REPO), "archive", revision], stdout=archive, check=True)
        archive.seek(0)
        with tarfile.open(fileobj=archive) as tar:
            tar.extractall(dest, filter="data")
    for name in PACKAGE_DIRS:
        link = dest / "acfd" / name
        if not link.exists():
            link.symlink_to(Path("..") / name)
    return dest


def acfd(args: list[str], pythonpath: Path | None = None) -> None:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    print("$", ("PYTHONPATH=" + str(pythonpath) + " ") * bool(pythonpath) + "acfd " + shlex.join(args), flush=True)
    # cwd: not this checkout, whose acfd/ would shadow PYTHONPATH (python -m puts the cwd first)
    subprocess.run([sys.executable, "-m", "acfd", *args], env=env, check=True, cwd=tempfile.gettempdir())


def serve_and_load(repo: Path, out: Path, load_args: list[str], pythonpath: Path | None) -> dict:
    from acfd.serving.server import ServerConfig, TritonServer, free_port

    ports: set[int] = set()
    while len(ports) < 3:
        ports.add(free_port())
    grpc, http, metrics = sorted(ports)
    saved, cwd = os.environ.get("PYTHONPATH"), os.getcwd()
    if pythonpath is not None:
        os.environ["PYTHONPATH"] = str(pythonpath)
    os.chdir(tempfile.gettempdir())  # the server's python models must not find this checkout's acfd/ first
    try:
        config = ServerConfig(
            repo, grpc_port=grpc, http_port=http, metrics_port=metrics,
            log_file=out / "tritonserver.log", startup_timeout_s=300,
        )  # fmt: skip
        server = TritonServer(config).start()
    finally:
        os.chdir(cwd)
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
    try:
        acfd(["loadtest", "--url", server.grpc_url, "--out", str(out / "load"), *load_args])
    finally:
        server.stop()
    return json.loads((out / "load" / "summary.json").read_text())


def facts(summary: dict) -> dict:
    levels = {level["concurrency"]: level for level in summary["levels"]}
    first = levels[min(levels)]
    return {
        "best_infer_per_s": summary["best"]["infer_per_s"],
        "best_concurrency": summary["best"]["concurrency"],
        "p50_ms_at_1": first["p50_ms"] if min(levels) == 1 else None,
        "compute_ms_at_1": first.get("composing_compute_ms") or first.get("composing_ms"),
        "in_process_infer_per_s": (summary.get("in_process") or {}).get("infer_per_s"),
        "server_over_in_process_by_level": summary.get("server_over_in_process_by_level"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--base", default="409d860", help="revision to compare with")
    parser.add_argument("--weights", type=Path, default=None, help="checkpoint (default: the embedded model)")
    parser.add_argument("--concurrency", default="1:4:1")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--repo-args", default="", help="extra `acfd repo` flags for the new repository")
    args = parser.parse_args(argv)

    from acfd.weights import DEFAULT_WEIGHTS

    weights = (args.weights or DEFAULT_WEIGHTS).resolve()
    out = args.out.resolve()
    base_src = snapshot(args.base, out / "base" / "src")
    load = ["--concurrency", args.concurrency, "--seconds", str(args.seconds), "--images", str(args.images)]

    acfd(["export", "--weights", str(weights), "--out", str(out / "base" / "export"), "--quiet"], base_src)
    acfd(["repo", "--export", str(out / "base" / "export"), "--out", str(out / "base" / "repo")], base_src)
    acfd(["export", "--weights", str(weights), "--out", str(out / "new" / "export"), "--quiet"])
    acfd(
        [
            "repo",
            "--export",
            str(out / "new" / "export"),
            "--out",
            str(out / "new" / "repo"),
            *shlex.split(args.repo_args),
        ]
    )

    base = facts(serve_and_load(out / "base" / "repo", out / "base", [*load, "--no-local"], base_src))
    new = facts(
        serve_and_load(out / "new" / "repo", out / "new", [*load, "--export", str(out / "new" / "export")], None)
    )
    ratio = new["best_infer_per_s"] / base["best_infer_per_s"]
    report = {
        "weights": str(weights),
        "base_revision": args.base,
        "settings": vars(args) | {"out": str(out), "weights": str(weights)},
        "base": base,
        "new": new,
        "best_throughput_new_over_base": ratio,
    }
    (out / "comparison.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    for name, f in (("base " + args.base, base), ("new", new)):
        compute = ", ".join(f"{m} {ms:.1f} ms" for m, ms in sorted((f["compute_ms_at_1"] or {}).items()))
        print(f"{name:>14}: best {f['best_infer_per_s']:.2f} images/s at concurrency {f['best_concurrency']}, "
              f"p50 at 1: {f['p50_ms_at_1']:.1f} ms; compute at 1: {compute}")  # fmt: skip
    if new["in_process_infer_per_s"]:
        print(f"           new: in process {new['in_process_infer_per_s']:.2f} images/s; server / in-process by level: "
              + ", ".join(f"{c}: {r:.2f}" for c, r in new["server_over_in_process_by_level"].items()))  # fmt: skip
    print(f"best throughput new / base: {ratio:.2f}x (wrote {out / 'comparison.json'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
