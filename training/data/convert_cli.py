"""``acfd data convert SRC --to coco|csv|yolo|voc OUT``: read a data set in any format and write it in
another (``annotations_write.write_set``), then say what the target format could not hold.

Exit status: 0 written, 2 when SRC cannot be read or OUT cannot be written (one line on stderr).
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from acfd.training.data.annotations_write import TARGETS
    from acfd.training.data.check_cli import add_data_arguments

    add_data_arguments(parser)
    parser.add_argument("--to", required=True, choices=TARGETS, help="format to write")
    parser.add_argument("out", help="new or empty folder for the converted set (images are hard-linked or copied)")


def run(args: argparse.Namespace) -> int:
    from acfd.training.data.annotations_write import write_set
    from acfd.training.data.check_cli import load_for

    ds = load_for(args, "acfd data convert", hint=" (acfd data check lists them all)")
    if ds is None:
        return 2
    try:
        report = write_set(ds, args.to, args.out)
    except ValueError as err:
        print(f"acfd data convert: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"acfd data convert: cannot write {err.filename or args.out}: {err.strerror or err}", file=sys.stderr)
        return 2
    ignore = f", {report.ignore_regions} ignore regions" if report.ignore_regions else ""
    print(
        f"wrote {report.images} images, {report.faces} faces{ignore} to {report.out} as {args.to} "
        f"({', '.join(report.files)})"
    )
    if report.lost:
        print(f"{args.to} cannot hold: {', '.join(report.lost)} (left out)")
    return 0
