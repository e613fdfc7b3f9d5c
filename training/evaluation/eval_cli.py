"""``acfd eval``: AP@0.5 of a checkpoint (or of a freshly initialised preset) on a data set.

``acfd eval (--weights W | --preset NAME | --export DIR [--engine E]) --data PATH [--images DIR]
[--format F] [--split S (default val)] [--no-ignore] [--multiscale | --scales HxW...]
[--json [OUT]] [--plot pr.png] [--limit N] [--device cpu] [--precision fp32|bf16] [--min-score S]`` prints a
short report ending in ``mAP@0.5: 0.xxxx``, with precision, recall, F1 and the faces found per size at the
model's display threshold (or ``--min-score``) and the best-F1 threshold;
``--json`` writes the numbers (AP, precision/recall curve, images, faces, s/img) as JSON to OUT or,
without OUT, to stdout instead of the report; ``--plot`` writes the precision-recall curve as PNG.
Single scale and ``--multiscale`` use the checkpoint's own scales (the paper's for a model trained at
640; scaled with the training size otherwise); ``--scales`` names others, merged when several.
``--preset`` alone evaluates a freshly initialised (seeded) model: the floor a trained one must beat.
``--export`` evaluates an ``acfd export`` folder through a CPU engine (``--engine``, default the
serving default; ``acfd.inference.engines``) exactly as the server runs it: uint8 pixels into the
exported graph, the same post-processing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _iou(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} must be in (0, 1]")
    return value


def _scale(text: str) -> tuple[int, int]:
    from acfd.training.info import parse_size

    try:
        h, w = parse_size(text, "--scales")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if not (32 <= h <= 4096 and 32 <= w <= 4096):
        raise argparse.ArgumentTypeError(f"{text!r}: each side must be 32 to 4096 pixels")
    return h, w


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from acfd.training.data.check_cli import add_format_arguments

    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--weights", metavar="CKPT", help="checkpoint to evaluate (its preset comes with it)")
    model.add_argument("--preset", metavar="NAME", help="evaluate a freshly initialised model of this preset")
    model.add_argument(
        "--export", metavar="DIR", help="evaluate an `acfd export` folder through a CPU engine (--engine)"
    )
    parser.add_argument(
        "--engine", default=None, metavar="ENGINE",
        help="CPU engine with --export: openvino (default), openvino-int8, onnxruntime, onnxruntime-int8",
    )  # fmt: skip
    parser.add_argument(
        "--data",
        required=True,
        metavar="PATH",
        help="COCO JSON, iCartoonFace CSV, YOLO data.yaml or folder, Pascal VOC folder, or a folder holding one; "
        "or a sources YAML (as acfd train's): every source's hold-out apart, then their mean",
    )
    parser.add_argument("--images", metavar="DIR", default=None, help="image folder, if not beside the annotations")
    add_format_arguments(parser, split="val")
    scales = parser.add_mutually_exclusive_group()
    scales.add_argument(
        "--multiscale",
        action="store_true",
        help="the checkpoint's three test scales (the paper's 480x645, 640x860, 800x1075 for a 640-trained model) "
        "instead of its single scale",
    )
    scales.add_argument(
        "--scales",
        type=_scale,
        nargs="+",
        default=None,
        metavar="HxW",
        help="evaluate at these height x width scales instead (detections of several are merged before NMS)",
    )
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        default=None,
        metavar="OUT",
        help="write the results as JSON to OUT, or to stdout (instead of the report) when OUT is omitted",
    )
    parser.add_argument("--plot", metavar="PNG", default=None, help="write the precision-recall curve to this PNG")
    parser.add_argument(
        "--errors",
        nargs="?",
        const="errors.png",
        default=None,
        metavar="PNG",
        help="TIDE-style error breakdown (missed, localisation, duplicate, background; dAP if fixed) per source "
        "and face size: print the table and write it as PNG (default errors.png), and beside it "
        "STEM_background.png: the highest-scoring background false positives cut out of their images",
    )
    parser.add_argument(
        "--limit", type=_positive_int, default=None, metavar="N", help="evaluate the first N images only"
    )
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, ...")
    parser.add_argument("--batch-size", type=_positive_int, default=1, help="images per forward pass")
    parser.add_argument("--iou", type=_iou, default=0.5, help="IoU threshold of a true positive")
    parser.add_argument("--seed", type=int, default=0, help="initialisation seed with --preset")
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=("fp32", "bf16"),
        help="network precision: fp32, or bf16 autocast (on a CPU with AVX512-BF16/AMX, or CUDA)",
    )
    parser.add_argument(
        "--min-score",
        type=float,
        default=None,
        metavar="S",
        help="report precision/recall/F1 of detections scoring >= S (default: the model's display threshold)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _fail(message: str) -> int:
    print(f"acfd eval: {message}", file=sys.stderr)
    return 2


def _device(name: str):
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {name!r} is not a torch device (cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name}: only cpu and cuda are supported")
    return device


def _model(args):
    """``(model, preset)`` from ``--weights`` or ``--preset``; ValueError with a readable message."""
    import torch

    if args.weights:
        from acfd.training.checkpoint import load_model

        model, preset, _ = load_model(args.weights)  # CheckpointError is a ValueError
        return model, preset
    from acfd.training.config import load_preset
    from acfd.training.model import build_model

    preset = load_preset(args.preset)
    torch.manual_seed(args.seed)
    return build_model(preset), preset


def _engine_network(args):
    """``(EngineNetwork, preset)`` for ``--export``: the export's graph in a CPU engine."""
    from acfd.inference.engines import DEFAULT_ENGINE, open_engine
    from acfd.inference.manifest import read_manifest
    from acfd.training.config import Preset
    from acfd.training.evaluation.inference import EngineNetwork

    manifest = read_manifest(args.export)
    engine = open_engine(args.export, manifest, args.engine or DEFAULT_ENGINE, warm_up=False)
    if engine.note:
        print(f"acfd eval: {engine.note}", file=sys.stderr)
    print(f"acfd eval: {args.export} through {engine.describe()}", file=sys.stderr)
    return EngineNetwork(engine), Preset.from_dict(manifest.preset_config)


def run(args: argparse.Namespace) -> int:
    data_path = Path(args.data)
    if not data_path.exists():
        return _fail(f"--data {data_path}: no such file or folder")
    if args.images is not None and not Path(args.images).is_dir():
        return _fail(f"--images {args.images}: no such folder")
    for name, target in (("--plot", args.plot), ("--json", args.json), ("--errors", args.errors)):
        if target not in (None, "-") and not Path(target).parent.is_dir():
            return _fail(f"{name} {target}: folder {Path(target).parent} does not exist")

    import torch

    from acfd.training.data.annotations import load_detection_set
    from acfd.training.model import Predictor

    if args.engine is not None and not args.export:
        return _fail("--engine applies to --export (an exported model run by a CPU engine)")
    try:
        device = _device(args.device)
        model, preset = _engine_network(args) if args.export else _model(args)
    except (ValueError, OSError, RuntimeError) as err:  # ManifestError, EngineError
        return _fail(str(err))
    try:
        sets = _eval_sets(args, data_path)
    except ValueError as err:  # SourceError
        return _fail(str(err))
    loaded = []
    for name, path, images, fmt in sets:
        try:
            detection_set = load_detection_set(
                path,
                images_dir=images,
                category=args.category,
                progress=not args.no_progress,
                format=fmt,
                split=args.split,
                keep_ignore=not args.no_ignore,
            )
        except (ValueError, OSError) as err:  # the loader's messages name the file
            return _fail(str(err) if len(sets) == 1 else f"source {name!r}: {err}")
        for problem in detection_set.problems[:20]:
            print(f"acfd eval: warning: {problem}", file=sys.stderr)
        if len(detection_set.problems) > 20:
            print(f"acfd eval: warning: ... {len(detection_set.problems) - 20} more problems", file=sys.stderr)
        if not detection_set.records:
            return _fail(f"--data {path}: no usable images")
        loaded.append((name, path, detection_set))

    if args.min_score is not None and not 0.0 <= args.min_score <= 1.0:
        return _fail(f"--min-score {args.min_score}: must be between 0 and 1")
    predictor = model if args.export else Predictor(model).to(device).eval()
    cfg = preset.inference
    if args.scales:
        cfg = dataclasses.replace(cfg, single_scale=args.scales[0], test_scales=tuple(args.scales))
    results = []
    for name, path, detection_set in loaded:
        if len(loaded) > 1 and not args.no_progress:
            print(f"acfd eval: source {name}: {path}", file=sys.stderr)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            results.append((name, path, _evaluate(args, predictor, detection_set, cfg)))
    if len(results) == 1:
        return _report(args, preset, data_path, results[0][2])
    return _report_sources(args, preset, data_path, results)


def _eval_sets(args, data_path: Path) -> list[tuple[str, str, str | None, str | None]]:
    """``(name, annotations, images, format)`` to evaluate: the one ``--data``, or each hold-out of a
    sources YAML (its ``val``; a source without one is left out)."""
    from acfd.training.data.sources import is_sources_file, read_sources

    if not is_sources_file(data_path):
        return [(data_path.stem, str(data_path), args.images, args.format)]
    sources = [s for s in read_sources(data_path) if s.val]
    if not sources:
        raise ValueError(f"--data {data_path}: no source has a 'val' hold-out to evaluate")
    return [(s.name, s.val, s.images or args.images, s.format or args.format) for s in sources]


def _evaluate(args, predictor, detection_set, cfg):
    from acfd.training.evaluation.evaluate import evaluate

    return evaluate(
        predictor,
        detection_set,
        multiscale=args.multiscale or len(args.scales or ()) > 1,
        cfg=cfg,
        progress=not args.no_progress,
        limit=args.limit,
        batch_size=args.batch_size,
        iou_threshold=args.iou,
        min_score=args.min_score,
        keep_detections=bool(args.errors),
    )


def _report(args, preset, data_path, result) -> int:
    from acfd.training.evaluation.evaluate import format_report, json_summary

    for line in result["skipped"]:
        print(f"acfd eval: skipped {line}", file=sys.stderr)
    if result["images"] == 0:
        return _fail(f"--data {data_path}: none of the images could be read")
    if result["faces"] == 0:
        print(f"acfd eval: warning: {data_path} has no faces in the evaluated images; AP is undefined", file=sys.stderr)

    summary = json_summary(result)
    summary["model"] = args.weights or f"preset {preset.name} (initialised, seed {args.seed})"
    summary["data"] = str(data_path)
    summary["precision_mode"] = args.precision
    if args.plot:
        from acfd.training.evaluation.plots import plot_pr_curve

        try:
            plot_pr_curve(result["precision"], result["recall"], result["ap"], args.plot, title=preset.name)
        except OSError as err:
            return _fail(f"--plot {args.plot}: cannot write ({err.strerror or err})")
    done = _errors_and_json(args, [("", result)], preset.name, summary)
    if done is not None:
        return done
    print(f"model: {summary['model']}")
    for line in format_report(result):
        print(line)
    return 0


def _report_sources(args, preset, data_path, results) -> int:
    """Several hold-outs: each one's report, then a table and the mean; ``best_f1`` in the JSON is the
    one threshold of best mean F1 over the sources (what a model trained on all of them ships)."""
    import math

    from acfd.training.evaluation.evaluate import format_report, json_summary
    from acfd.training.evaluation.operating_point import best_mean_f1

    for name, _, result in results:
        for line in result["skipped"]:
            print(f"acfd eval: {name}: skipped {line}", file=sys.stderr)
        if result["images"] == 0:
            return _fail(f"source {name!r}: none of the images could be read")
    aps = [r["ap"] for _, _, r in results if math.isfinite(r["ap"])]
    mean_ap = sum(aps) / len(aps) if aps else float("nan")
    mean_f1 = best_mean_f1([(r["precision"], r["recall"], r["scores"]) for _, _, r in results])
    summary = {
        "model": args.weights or args.export or f"preset {preset.name} (initialised, seed {args.seed})",
        "data": str(data_path),
        "precision_mode": args.precision,
        "mean_ap": None if not math.isfinite(mean_ap) else mean_ap,
        "best_f1": {
            "threshold": mean_f1["threshold"],
            "f1": mean_f1["f1"],
            "rule": "one threshold of best mean F1 over the sources",
            "f1_per_source": dict(zip([n for n, _, _ in results], mean_f1["f1_per_set"])),
        },
        "sources": {name: json_summary(r) | {"data": path} for name, path, r in results},
    }
    if args.plot:
        print(
            "acfd eval: --plot draws one curve: with several sources use --json and each source's curve",
            file=sys.stderr,
        )
    done = _errors_and_json(args, [(name, r) for name, _, r in results], preset.name, summary)
    if done is not None:
        return done
    print(f"model: {summary['model']}")
    for name, path, result in results:
        print(f"\n== {name} ({path})")
        for line in format_report(result):
            print(line)
    print(f"\n{'source':<16} {'images':>6} {'faces':>6} {'mAP@0.5':>8} {'P@thr':>6} {'R@thr':>6} {'F1@thr':>6}")
    for name, _, r in results:
        at = r["at_threshold"]
        print(
            f"{name:<16} {r['images']:>6} {r['faces']:>6} {r['ap']:>8.4f} {at['precision']:>6.3f} "
            f"{at['recall']:>6.3f} {at['f1']:>6.3f}"
        )
    print(
        f"best mean F1 {mean_f1['f1']:.4f} at score >= {mean_f1['threshold']:.3f} "
        f"(per source: {', '.join(f'{f:.3f}' for f in mean_f1['f1_per_set'])})"
    )
    print(f"mean mAP@0.5 over {len(aps)} sources: {mean_ap:.4f}")
    return 0


def _errors_and_json(args, results, title: str, summary: dict) -> int | None:
    """``--errors`` and ``--json``: an exit code when the run ends here (the JSON went to stdout, or a
    write failed), else ``None`` (the report follows)."""
    if args.errors:
        code = _write_errors(args, results, title, quiet=args.json == "-")
        if code:
            return code
    if args.json == "-":
        print(json.dumps(summary, indent=1))
        return 0
    if args.json:
        try:
            Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
        except OSError as err:
            return _fail(f"--json {args.json}: cannot write ({err.strerror or err})")
    return None


def _write_errors(args, results, title: str, quiet: bool) -> int:
    """The error breakdown of each result (rows ``source: size``), printed (to stderr when the JSON goes
    to stdout) and drawn to ``--errors``."""
    from acfd.training.evaluation.error_plot import plot_error_breakdown
    from acfd.training.evaluation.errors import breakdown_by_size, format_error_table

    rows = {}
    for name, result in results:
        for row, breakdown in breakdown_by_size(*result["per_image"], t_f=args.iou).items():
            rows[f"{name}: {row}" if name else row] = breakdown
    out = sys.stderr if quiet else sys.stdout
    print("error breakdown (dAP = AP points gained if that error were fixed; TIDE, t_f = IoU, t_b = 0.1):", file=out)
    for line in format_error_table(rows):
        print(line, file=out)
    try:
        plot_error_breakdown(rows, args.errors, title=f"{title}: where the AP goes")
    except OSError as err:
        return _fail(f"--errors {args.errors}: cannot write ({err.strerror or err})")
    print(f"error breakdown plot: {args.errors}", file=out)
    return _write_background_gallery(args, results, out)


def _write_background_gallery(args, results, out) -> int:
    """``STEM_background.png`` beside ``--errors``: what the detector takes for faces, per source."""
    from acfd.training.evaluation.error_gallery import draw_background_gallery
    from acfd.training.evaluation.errors import background_detections

    path = Path(args.errors)
    path = path.with_name(f"{path.stem}_background.png")
    blocks = []
    for name, result in results:
        found = background_detections(*result["per_image"], t_f=args.iou)
        threshold = result["at_threshold"]["threshold"]
        at = sum(score >= threshold for score, _, _ in found)
        counts = f"background false positives: {at} at score >= {threshold:.3f}, {len(found)} in all"
        label = f"{name}: {counts}" if name else counts
        blocks.append((label, found, result["paths"]))
    try:
        draw_background_gallery(blocks, path)
    except OSError as err:
        return _fail(f"--errors: cannot write {path} ({err})")
    for label, _, _ in blocks:
        print(label, file=out)
    print(f"background false positives, highest score first: {path}", file=out)
    return 0
