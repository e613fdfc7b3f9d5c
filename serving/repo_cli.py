"""``acfd repo``: build a Triton model repository from an ``acfd export`` directory.

``acfd repo --export DIR --out REPO --target cpu|tensorrt [--engine E] [--threads N]
[--instances MODEL=N,...]`` writes the preprocess, detector, postprocess and ``acfd`` ensemble
models into REPO (see ``acfd.serving.repo``); serve it with ``acfd serve --model-repository REPO``.
"""

from __future__ import annotations

import argparse
import sys

from acfd.inference.engines import DEFAULT_ENGINE, ENGINES, FALLBACK_ENGINE
from acfd.serving.repo import TARGETS, RepoError, build_repository, config_parameter, parse_instances

DEFAULT_OUT = "out/model_repository"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--export", required=True, metavar="DIR", help="export directory (model.onnx + export.json from `acfd export`)"
    )
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
        default=None,
        choices=ENGINES,
        help=f"CPU engine of the detector (--target cpu); default {DEFAULT_ENGINE} (the export's int8 model in "
        f"OpenVINO), {FALLBACK_ENGINE} when the export has none; openvino runs bf16 where the CPU has it "
        "(float32 otherwise, said in the server log)",
    )
    parser.add_argument("--threads", type=int, default=0, metavar="N", help="detector engine threads; 0 = every core")
    parser.add_argument(
        "--instances",
        default=None,
        metavar="MODEL=N,...",
        help="instance counts, e.g. preprocess=2,detector=1 (default: the templates', set for a 2-core box)",
    )


def run(args: argparse.Namespace) -> int:
    notes: list[str] = []
    try:
        out = build_repository(
            args.export, args.out, args.target, engine=args.engine, threads=args.threads,
            instances=parse_instances(args.instances), notes=notes,
        )  # fmt: skip
    except RepoError as err:
        print(f"acfd repo: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"acfd repo: {err.filename or args.out}: {err.strerror or err}", file=sys.stderr)
        return 1
    for note in notes:
        print(f"acfd repo: {note}")
    engine = (
        config_parameter((out / "detector" / "config.pbtxt").read_text(), "engine") if args.target == "cpu" else None
    )
    what = f"target {args.target}" + (f", engine {engine}" if engine else "")
    print(f"acfd repo: wrote {out} ({what}); serve it with: acfd serve --model-repository {out}")
    return 0
