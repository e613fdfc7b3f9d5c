"""``acfd data check|convert|show PATH ...``: the data-set jobs.

``acfd data check PATH [--images DIR] [--format F] [--category C] [--split S] [--json]``: load a data
set the way training and evaluation will, and print what was found: images, faces, ignore regions,
image sizes, face size and aspect-ratio histograms, and every problem with its file and line (or
entry index). ``convert`` (``convert_cli``) writes it in another format, ``show`` (``show``) draws it.

Exit status of ``check``: 0 when the set loaded without problems, 1 when it loaded but problems were
found (bad lines, missing or unreadable images, dropped boxes), 2 when it could not be loaded at all.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from acfd.training.data.annotations import FORMATS, load_detection_set


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from acfd.training.data import convert_cli, show

    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = sub.add_parser(
        "check",
        help="load a data set and report what was found and every problem",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_data_arguments(check)
    check.add_argument(
        "--decode",
        action="store_true",
        help="decode every image (slow; also catches truncated files) instead of reading headers",
    )
    check.add_argument("--json", action="store_true", help="print the summary as JSON (all problems)")
    check.add_argument("--show", type=int, default=30, metavar="N", help="problems to list in the text report")
    convert_cli.add_arguments(
        sub.add_parser(
            "convert", help="write a data set in another format", formatter_class=argparse.ArgumentDefaultsHelpFormatter
        )
    )
    show.add_arguments(
        sub.add_parser(
            "show",
            help="draw a grid of images with their boxes and the box histograms",
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
    )


def add_data_arguments(parser: argparse.ArgumentParser, split: str | None = None) -> None:
    """The arguments that say how to read a data set (``load_kwargs`` turns them into loader arguments)."""
    parser.add_argument(
        "path", help="COCO JSON, iCartoonFace CSV, YOLO data.yaml or folder, Pascal VOC folder, or a folder holding one"
    )
    parser.add_argument(
        "--images",
        default=None,
        metavar="DIR",
        help="image folder (CSV, COCO, VOC); without it, images are looked up beside the "
        "annotation file, then in an images/ folder beside it (VOC: JPEGImages/)",
    )
    add_format_arguments(parser, split)


def add_format_arguments(parser: argparse.ArgumentParser, split: str | None = None) -> None:
    parser.add_argument(
        "--format", default=None, choices=FORMATS, help="annotation format; None: detected from the path"
    )
    parser.add_argument(
        "--category",
        default=None,
        help="class to keep when there are several: COCO category or YOLO class (name or id), "
        "VOC object name, CSV label",
    )
    parser.add_argument(
        "--split",
        default=split,
        help="split to read: a YOLO data.yaml key (None: train), or a VOC ImageSets/Main/SPLIT.txt "
        "list (None, or no such list: every annotation file)",
    )
    parser.add_argument(
        "--no-ignore",
        action="store_true",
        help="skip COCO crowd / VOC difficult boxes instead of keeping them as ignore regions "
        "(in eval: detections on them then count as false positives)",
    )


def load_kwargs(args: argparse.Namespace) -> dict:
    return {
        "images_dir": args.images,
        "category": args.category,
        "format": args.format,
        "split": args.split,
        "keep_ignore": not args.no_ignore,
    }


def load_for(args: argparse.Namespace, prog: str, hint: str = ""):
    """The data set ``args`` name for ``acfd data convert|show`` (``prog``), or None after one error
    line; problems that were skipped are summed up in one line (``hint`` appended)."""
    try:
        ds = load_detection_set(args.path, **load_kwargs(args))
    except (FileNotFoundError, ValueError) as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return None
    if ds.problems:
        print(
            f"{prog}: {args.path}: {len(ds.problems)} problem(s) skipped, first: {ds.problems[0]}{hint}",
            file=sys.stderr,
        )
    return ds


def run(args: argparse.Namespace) -> int:
    if args.action != "check":
        from acfd.training.data import convert_cli, show

        return (convert_cli if args.action == "convert" else show).run(args)
    try:
        ds = load_detection_set(args.path, progress=not args.json, verify=args.decode, **load_kwargs(args))
    except (FileNotFoundError, ValueError) as err:
        print(f"acfd data check: {err}", file=sys.stderr)
        return 2
    summary = ds.summary()
    try:
        print(json.dumps(summary, indent=2) if args.json else format_summary(summary, show=args.show))
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 1 if ds.problems else 0


KINDS = {"coco": "COCO JSON", "icartoonface-csv": "iCartoonFace CSV", "yolo": "YOLO", "voc": "Pascal VOC"}


def format_summary(s: dict, show: int = 30) -> str:
    kind = KINDS.get(s["format"], s["format"])
    details = [kind] + [
        f"{label} {s[key]}" for key, label in (("split", "split"), ("class_name", "class")) if s.get(key)
    ]
    lines = [
        f"{s['source']} ({', '.join(details)})",
        f"  images             {s['images']:>7}   ({s['negatives']} without faces)",
        f"  faces              {s['faces']:>7}   (at most {s['max_faces_per_image']} in one image)",
    ]
    fate = "   (kept as ignore regions)" if s["ignore_kept"] else "   (skipped)"
    for key, label in (
        ("ignore_regions", "ignore regions"),
        ("clipped", "boxes clipped"),
        ("dropped", "boxes dropped"),
        ("bad_entries", "bad lines/entries"),
        ("missing_images", "missing images"),
        ("unreadable_images", "unreadable images"),
        ("orphan_labels", "labels w/o image"),
        ("crowd", "crowd boxes"),
        ("difficult", "difficult boxes"),
        ("other_category", "other category"),
    ):
        if s[key] or key in ("clipped", "dropped", "bad_entries", "missing_images"):
            lines.append(f"  {label:<18} {s[key]:>7}{fate if key in ('crowd', 'difficult') else ''}")
    sizes = ", ".join(f"{x['size']} ({x['images']})" for x in s["image_sizes"])
    lines.append(f"  image sizes        {sizes or '-'}")
    if s["face_size_median"] is not None:
        lines.append(f"  median face side   {s['face_size_median']:>7.1f} px")
    lines += _bars("face size sqrt(w*h), px", s["size_histogram"], s["faces"], "{:.0f}")
    lines += _bars("aspect ratio w/h", s["aspect_histogram"], s["faces"], "{:.2f}")
    problems = s["problems"]
    lines.append(f"problems: {len(problems)}")
    lines += [f"  {p}" for p in problems[:show]]
    if len(problems) > show:
        lines.append(f"  ... and {len(problems) - show} more (--json lists all)")
    return "\n".join(lines)


def _bars(title: str, hist: list[dict], total: int, fmt: str, width: int = 40) -> list[str]:
    out = [title]
    peak = max((b["count"] for b in hist), default=0) or 1
    for b in hist:
        lo = fmt.format(b["low"])
        label = f"{lo}+" if b["high"] is None else f"{lo}-{fmt.format(b['high'])}"
        share = 100.0 * b["count"] / total if total else 0.0
        out.append(f"  {label:>11} {b['count']:>7} {share:5.1f}% {'#' * round(width * b['count'] / peak)}")
    return out
