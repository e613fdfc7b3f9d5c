"""``acfd repo``: build a Triton model repository from an ``acfd export`` directory.

``acfd repo --export DIR --out REPO --target cpu|tensorrt [--engine E] [--threads N]
[--instances MODEL=N,...]`` writes the preprocess, detector, postprocess and ``acfd`` ensemble
models into REPO (see ``acfd.serving.repo``); serve it with ``acfd serve --model-repository REPO``.
"""

from __future__ import annotations

import argparse
import sys

from acfd.inference.engines import DEFAULT_ENGINE, ENGINES
from acfd.serving.repo import TARGETS, RepoError, build_repository, parse_instances

DEFAULT_OUT = "out/model_repository"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--export", required=True, metavar="DIR", help="export directory (model.onnx + export.json from `acfd export`)")
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="REPO", help="model repository folder to write")
    parser.add_argument(
        "--target",
        default="cpu",
        choices=TARGETS,
        help="cpu: a CPU engine in a python-backend model (runs on the bundled server); "
        "tensorrt: the export's TensorRT engine (platform tensorrt_plan, full Triton on a GPU host)",
    )
    parser.add_argument(
        "--engine",
        default=DEFAULT_ENGINE,
        choices=ENGINES,
        help="CPU engine of the detector (--target cpu): openvino runs bf16 where the CPU has it (float32 "
        "otherwise, said in the server log); the -int8 engines need `acfd export --int8`",
    )
    parser.add_argument("--threads", type=int, default=0, metavar="N", help="detector engine threads; 0 = every core")
    parser.add_argument(
        "--instances",
        default=None,
        metavar="MODEL=N,...",
        help="instance counts, e.g. preprocess=2,detector=1 (default: the templates', set for a 2-core box)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        out = build_repository(
            args.export, args.out, args.target, engine=args.engine, threads=args.threads,
            instances=parse_instances(args.instances),
        )  # fmt: skip
    except RepoError as err:
        print(f"acfd repo: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"acfd repo: {err.filename or args.out}: {err.strerror or err}", file=sys.stderr)
        return 1
    what = f"target {args.target}" + (f", engine {args.engine}" if args.target == "cpu" else "")
    print(f"acfd repo: wrote {out} ({what}); serve it with: acfd serve --model-repository {out}")
    return 0
