"""``acfd export``: checkpoint -> fused ONNX graph + manifest (+ TensorRT engine) in one folder.

    acfd export --weights RUN/last.pt --out EXPORT [--opset 17] [--preset acfd51]
                [--no-int8 | --calibration DIR [--calibration-images 32]]
                [--tensorrt [--fp16] [--max-batch 8] [--trt-profiles one|per-scale]]

Writes ``EXPORT/model.onnx``, ``EXPORT/model.int8.onnx`` (the int8 model the default CPU engine
serves, calibrated on generated scenes or ``--calibration`` images; not with ``--no-int8``) and
``EXPORT/export.json`` (and ``EXPORT/model.plan`` with ``--tensorrt``); see ``acfd.export.graph`` for
the contract. A bad checkpoint or option prints
one line naming the file or value and exits with status 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from acfd.inference.manifest import MANIFEST_FILE
from acfd.export.graph import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, ONNX_FILE, ExportError
from acfd.export.tensorrt_build import default_timing_cache


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weights", required=True, type=Path, help="checkpoint written by `acfd train` (e.g. RUN/last.pt)"
    )
    parser.add_argument("--out", required=True, type=Path, help="export folder (created if missing)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset ({MIN_OPSET} to {MAX_OPSET})")
    parser.add_argument("--preset", default=None, help="fail unless the checkpoint belongs to this preset")
    parser.add_argument(
        "--tensorrt", action="store_true", help="also build a TensorRT engine (model.plan); needs TensorRT and a GPU"
    )
    parser.add_argument("--fp16", action="store_true", help="let TensorRT use FP16 kernels (with --tensorrt)")
    parser.add_argument("--max-batch", type=int, default=8, help="largest batch the TensorRT engine accepts")
    parser.add_argument(
        "--trt-profiles",
        choices=("one", "per-scale"),
        default="one",
        help="one optimisation profile spanning all test scales, or one per scale",
    )
    parser.add_argument(
        "--timing-cache", type=Path, default=default_timing_cache(), help="TensorRT timing cache, reused across builds"
    )
    parser.add_argument("--workspace-mib", type=int, default=4096, help="TensorRT builder workspace in MiB")
    parser.add_argument(
        "--int8", action=argparse.BooleanOptionalAction, default=True,
        help="also write model.int8.onnx (convolutions quantized), which the default CPU engine serves",
    )  # fmt: skip
    parser.add_argument(
        "--calibration", type=Path, default=None, metavar="DIR",
        help="images to calibrate int8 ranges on (frames like those you will serve); default: generated scenes",
    )  # fmt: skip
    parser.add_argument(
        "--calibration-images", type=int, default=32, metavar="N", help="calibration images (each at every test scale)"
    )
    parser.add_argument(
        "--no-verify", action="store_true", help="skip the ONNX Runtime self-check at a second input shape"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from acfd.export.graph import export_model

    try:
        manifest = export_model(
            args.weights,
            args.out,
            opset=args.opset,
            tensorrt=args.tensorrt,
            fp16=args.fp16,
            max_batch=args.max_batch,
            progress=not args.quiet,
            expect_preset=args.preset,
            trt_profiles=args.trt_profiles,
            timing_cache=args.timing_cache,
            workspace_mib=args.workspace_mib,
            verify=not args.no_verify,
        )
        if args.int8:
            from acfd.export import quantize

            if args.calibration_images < 1:
                raise ExportError(f"--calibration-images {args.calibration_images}: want at least 1")
            if args.calibration is not None:
                images, source = (
                    quantize.folder_images(args.calibration, args.calibration_images),
                    str(args.calibration),
                )
            else:
                images, source = quantize.generated_images(args.calibration_images), "generated scenes"
            if not args.quiet:
                print(f"acfd export: calibrating int8 on {len(images)} images ({source})", file=sys.stderr)
            manifest = quantize.quantize_export(args.out, images, source=source)
    except ExportError as err:
        print(f"acfd export: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        where = err.filename or args.out
        print(f"acfd export: {where}: {err.strerror or err}", file=sys.stderr)
        return 1
    h, w = manifest.single_scale
    anchors = manifest.anchors_per_scale[f"{h}x{w}"]
    print(
        f"wrote {args.out / ONNX_FILE} (preset {manifest.preset}, opset {manifest.onnx.opset}, "
        f"{anchors} anchors at {h}x{w})"
    )
    if manifest.int8:
        print(
            f"wrote {args.out / manifest.int8['file']} (int8 convolutions, "
            f"{manifest.int8['calibration']['images']} calibration images)"
        )
    print(f"wrote {args.out / MANIFEST_FILE}")
    if manifest.tensorrt:  # the builder has printed the equivalent trtexec command line
        trt = manifest.tensorrt
        print(
            f"wrote {args.out / trt['file']} (fp16={trt['fp16']}, max batch {trt['max_batch']}, "
            f"{len(trt['profiles'])} profile(s))"
        )
    return 0
