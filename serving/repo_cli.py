"""``acfd repo``: build a Triton model repository from an ``acfd export`` directory.

``acfd repo --export DIR --out REPO --target cpu|tensorrt`` writes the preprocess, detector,
postprocess and ``acfd`` ensemble models into REPO (see ``acfd.serving.repo``); serve it with
``acfd serve --model-repository REPO``.
"""

from __future__ import annotations

import argparse
import sys

from acfd.serving.repo import TARGETS, RepoError, build_repository

DEFAULT_OUT = "out/model_repository"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--export", required=True, metavar="DIR", help="export directory (model.onnx + export.json from `acfd export`)")
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="REPO", help="model repository folder to write")
    parser.add_argument(
        "--target",
        default="cpu",
        choices=TARGETS,
        help="cpu: ONNX Runtime in a python-backend model (runs on the bundled server); "
        "tensorrt: the export's TensorRT engine (platform tensorrt_plan, full Triton on a GPU host)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        out = build_repository(args.export, args.out, args.target)
    except RepoError as err:
        print(f"acfd repo: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"acfd repo: {err.filename or args.out}: {err.strerror or err}", file=sys.stderr)
        return 1
    print(f"acfd repo: wrote {out} (target {args.target}); serve it with: acfd serve --model-repository {out}")
    return 0
