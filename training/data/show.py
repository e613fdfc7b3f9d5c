"""``acfd data show PATH [--images DIR] [--n 16] [--out grid.png]``: what a data set's boxes are, at a glance.

One PNG: a grid of ``n`` images spread evenly over the set (first and last included) with their face
boxes drawn in green and their ignore regions in orange, and under it the face-size and aspect-ratio
histograms of the whole set (the bins ``acfd data check`` prints). Enough to see a set's box
convention (tight eye-to-chin boxes, or head-with-hair boxes) before training on it.

Exit status: 0 written, 1 when no image could be drawn, 2 when the set cannot be read.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import cv2
import numpy as np

FACE_RGB = (0, 220, 0)
IGNORE_RGB = (255, 140, 0)
TILE_WIDTH = 320


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from acfd.training.data.check_cli import add_data_arguments

    add_data_arguments(parser)
    parser.add_argument("--n", type=int, default=16, help="images in the grid")
    parser.add_argument("--columns", type=int, default=4, help="images per grid row")
    parser.add_argument("--out", default="grid.png", metavar="PNG", help="picture to write")


def run(args: argparse.Namespace) -> int:
    from acfd.training.data.check_cli import load_for

    if args.n < 1 or args.columns < 1:
        print("acfd data show: --n and --columns must be at least 1", file=sys.stderr)
        return 2
    out = Path(args.out)
    if not out.parent.is_dir():
        print(f"acfd data show: --out {out}: folder {out.parent} does not exist", file=sys.stderr)
        return 2
    ds = load_for(args, "acfd data show")
    if ds is None:
        return 2
    try:
        shown = draw_set(ds, out, args.n, args.columns)
    except OSError as err:
        print(f"acfd data show: cannot write {out}: {err.strerror or err}", file=sys.stderr)
        return 2
    if not shown:
        print(f"acfd data show: {args.path}: no image could be read", file=sys.stderr)
        return 1
    print(f"wrote {out}: {shown} of {ds.images} images, {ds.faces} faces, {ds.ignore_regions} ignore regions")
    return 0


def pick(count: int, n: int) -> list[int]:
    """``n`` indices spread evenly over ``range(count)``, first and last included."""
    if count <= n:
        return list(range(count))
    return sorted(set(np.linspace(0, count - 1, n).round().astype(int).tolist()))


def tile(record, width: int = TILE_WIDTH) -> np.ndarray:
    """The record's image scaled to ``width`` with its boxes drawn (raises ``ImageError``)."""
    from acfd.inference.image_io import read_image, resize_rgb

    image = read_image(record.path)
    scale = width / image.shape[1]
    height = max(1, round(image.shape[0] * scale))
    small = np.ascontiguousarray(resize_rgb(image, height, width))
    fx, fy = width / record.width, height / record.height
    for boxes, color in ((record.ignore, IGNORE_RGB), (record.boxes, FACE_RGB)):
        for x1, y1, x2, y2 in np.asarray(boxes, np.float64).reshape(-1, 4):
            cv2.rectangle(
                small,
                (int(round(x1 * fx)), int(round(y1 * fy))),
                (int(round(x2 * fx)) - 1, int(round(y2 * fy)) - 1),
                color,
                2,
            )
    return small


def draw_set(ds, out: Path, n: int = 16, columns: int = 4) -> int:
    """Write the picture; returns how many images it shows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from acfd.inference.image_io import ImageError

    tiles = []
    for i in pick(len(ds.records), n):
        try:
            tiles.append((ds.records[i], tile(ds.records[i])))
        except ImageError:
            continue
    if not tiles:
        return 0
    columns = min(columns, len(tiles))
    rows = math.ceil(len(tiles) / columns)
    aspect = max(t.shape[0] / t.shape[1] for _, t in tiles)
    fig = plt.figure(figsize=(3.2 * columns, 3.2 * rows * aspect + 2.6 + 0.5), dpi=80)
    grid = fig.add_gridspec(rows + 1, columns, height_ratios=[3.2 * aspect] * rows + [2.6])
    for k, (record, image) in enumerate(tiles):
        ax = fig.add_subplot(grid[k // columns, k % columns])
        ax.imshow(image)
        ignore = f", {len(record.ignore)} ignore" if len(record.ignore) else ""
        faces = f"{len(record.boxes)} face{'' if len(record.boxes) == 1 else 's'}"
        ax.set_title(f"{record.path.name[:28]}: {faces}{ignore}", fontsize=8)
        ax.axis("off")
    summary = ds.summary()
    half = max(1, columns // 2)
    for j, (key, title, fmt) in enumerate(
        (("size_histogram", "face side sqrt(w*h), px", "{:.0f}"), ("aspect_histogram", "aspect ratio w/h", "{:.2f}"))
    ):
        ax = fig.add_subplot(grid[rows, j * half : (j + 1) * half if j == 0 else columns])
        bins = summary[key]
        labels = [fmt.format(b["low"]) + ("+" if b["high"] is None else "-" + fmt.format(b["high"])) for b in bins]
        ax.bar(range(len(bins)), [b["count"] for b in bins], color="#4a8")
        ax.set_xticks(range(len(bins)), labels, fontsize=7, rotation=30)
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    median = summary["face_size_median"]
    fig.suptitle(
        f"{ds.source} ({ds.format}): {ds.images} images, {ds.faces} faces"
        + (f", median side {median:.0f} px" if median is not None else "")
        + "; green: faces, orange: ignore regions",
        fontsize=9,
    )
    fig.tight_layout()
    try:
        fig.savefig(out)
    finally:
        plt.close(fig)
    return len(tiles)
