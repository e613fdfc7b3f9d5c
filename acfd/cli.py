"""The ``acfd`` command: one front door, one subcommand per job.

Each subcommand lives in the module that owns the job and exposes two functions:
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their
subcommand is chosen, so ``acfd --help`` stays fast (torch is not imported for it).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# subcommand -> (module, one-line help). A plain table, in the order users meet the jobs.
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("acfd.training.info", "model size, anchors, strides and GFLOPs of a preset"),
    "synth": ("acfd.training.data.synth_cli", "generate cartoon scenes with COCO + iCartoonFace annotations"),
    "data": ("acfd.training.data.check_cli", "check, convert or show a data set: `acfd data check|convert|show PATH`"),
    "train": ("acfd.training.train_cli", "train a detector (CPU, one GPU, or torchrun)"),
    "eval": ("acfd.training.evaluation.eval_cli", "mAP@0.5, single- or multi-scale, with a PR plot"),
    "export": ("acfd.export.cli", "fuse and export to ONNX (and a TensorRT engine)"),
    "repo": ("acfd.serving.repo_cli", "build a Triton model repository from an export"),
    "serve": ("acfd.serving.serve_cli", "start NVIDIA Triton Inference Server on a model repository"),
    "predict": ("acfd.predict_cli", "faces in images, folders and videos, in this process (no server)"),
    "detect": ("acfd.clients.detect_cli", "send images to the server over gRPC, draw the boxes"),
    "loadtest": ("acfd.clients.loadtest_cli", "perf_analyzer concurrency sweep with a plotted report"),
    "bench": ("acfd.kernels.bench_cli", "kernel microbenchmarks: `acfd bench kernels`"),
    "demo": ("acfd.demo", "export, serve and detect on generated scenes in one go"),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="acfd",
        description="Asymmetric Cartoon Face Detector: acfd COMMAND --help for each command.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, summary) in COMMANDS.items():
        sub.add_parser(name, help=summary, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        args = _top_parser().parse_args(argv)
        if args.version:
            from acfd import __version__

            print(__version__)
            return 0
        _top_parser().print_help()
        return 0 if not argv else 2
    name, rest = argv[0], argv[1:]
    module_name, summary = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name):
            print(f"acfd {name}: not available in this version ({module_name} is missing)", file=sys.stderr)
            return 2
        raise
    parser = argparse.ArgumentParser(
        prog=f"acfd {name}", description=summary, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print(f"acfd {name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
