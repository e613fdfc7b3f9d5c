"""``acfd data check PATH [--images DIR] [--category C] [--json]``: load a data set the way training and
evaluation will, and print what was found: images, faces, image sizes, face size and aspect-ratio
histograms, and every problem with its file and line (or entry index).

Exit status: 0 when the set loaded without problems, 1 when it loaded but problems were found
(bad lines, missing or unreadable images, dropped boxes), 2 when it could not be loaded at all.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from acfd.training.data.annotations import load_detection_set


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["check"], help="what to do with the data set")
    parser.add_argument("path", help="COCO JSON file, iCartoonFace CSV, or a folder holding one")
    parser.add_argument("--images", default=None, metavar="DIR",
                        help="image folder; without it, images are looked up beside the annotation file, "
                             "then in an images/ folder beside it")
    parser.add_argument("--category", default=None, help="COCO category name or id, or CSV label to keep")
    parser.add_argument("--decode", action="store_true",
                        help="decode every image (slow; also catches truncated files) instead of reading headers")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON (all problems)")
    parser.add_argument("--show", type=int, default=30, metavar="N", help="problems to list in the text report")


def run(args: argparse.Namespace) -> int:
    try:
        ds = load_detection_set(args.path, images_dir=args.images, category=args.category,
                                progress=not args.json, verify=args.decode)
    except (FileNotFoundError, ValueError) as err:
        print(f"acfd data check: {err}", file=sys.stderr)
        return 2
    summary = ds.summary()
    try:
        print(json.dumps(summary, indent=2) if args.json else format_summary(summary, show=args.show))
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 1 if ds.problems else 0


def format_summary(s: dict, show: int = 30) -> str:
    kind = {"coco": "COCO JSON", "icartoonface-csv": "iCartoonFace CSV"}.get(s["format"], s["format"])
    lines = [f"{s['source']} ({kind})",
             f"  images             {s['images']:>7}   ({s['negatives']} without faces)",
             f"  faces              {s['faces']:>7}   (at most {s['max_faces_per_image']} in one image)"]
    for key, label in (("clipped", "boxes clipped"), ("dropped", "boxes dropped"), ("bad_entries", "bad lines/entries"),
                       ("missing_images", "missing images"), ("unreadable_images", "unreadable images"),
                       ("crowd", "crowd boxes skipped"), ("other_category", "other category")):
        if s[key] or key in ("clipped", "dropped", "bad_entries", "missing_images"):
            lines.append(f"  {label:<18} {s[key]:>7}")
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
