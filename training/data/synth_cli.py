"""``acfd synth OUT --images N --seed S [--size WxH] [--format coco|yolo|voc] [--preview sheet.png]``:
write generated cartoon scenes with COCO and iCartoonFace annotations (see ``synth.write_dataset``),
or as a YOLO folder (``images/``, ``labels/``, ``data.yaml``) or a Pascal VOC folder (``Annotations/``,
``JPEGImages/``) through ``annotations_write``; optionally with a contact sheet of the first scenes
and their boxes drawn.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from acfd.scenes.synth import DEFAULT_SIZE, write_dataset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="output folder (images/, annotations.json, annotations.csv)")
    parser.add_argument("--images", type=int, default=100, help="number of scenes")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same bytes")
    parser.add_argument("--size", default=f"{DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]}", help="scene size WIDTHxHEIGHT")
    parser.add_argument(
        "--format",
        default="coco",
        choices=("coco", "yolo", "voc"),
        help="coco: annotations.json and annotations.csv beside images/; yolo: images/, labels/ and "
        "data.yaml; voc: Annotations/ and JPEGImages/ (yolo and voc need a new or empty OUT)",
    )
    parser.add_argument(
        "--preview",
        default=None,
        metavar="PNG",
        help="also write a contact sheet of the first scenes with their boxes drawn",
    )


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size {text!r}: expected WIDTHxHEIGHT, e.g. 640x384") from None
    if not (16 <= w <= 8192 and 16 <= h <= 8192):
        raise ValueError(f"--size {text!r}: width and height must be between 16 and 8192")
    return w, h


def run(args: argparse.Namespace) -> int:
    try:
        size = parse_size(args.size)
        if args.images < 0:
            raise ValueError(f"--images {args.images}: must be 0 or more")
        if args.seed < 0:
            raise ValueError(f"--seed {args.seed}: must be 0 or more")
    except ValueError as err:
        print(f"acfd synth: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"acfd synth: {out} exists and is not a folder", file=sys.stderr)
        return 2
    if args.format != "coco" and out.is_dir() and any(out.iterdir()):
        print(
            f"acfd synth: {out} is not empty; --format {args.format} writes into a new or empty folder", file=sys.stderr
        )
        return 2
    try:
        stats = (
            write_dataset(out, args.images, args.seed, size)
            if args.format == "coco"
            else _write_as(args.format, out, args.images, args.seed, size)
        )
        if args.preview:
            Path(args.preview).parent.mkdir(parents=True, exist_ok=True)
            write_contact_sheet(out, Path(args.preview))
    except OSError as err:
        print(f"acfd synth: cannot write {err.filename or out}: {err.strerror or err}", file=sys.stderr)
        return 1
    files = stats.get("files", ["annotations.json", "annotations.csv", "images/"])
    print(f"wrote {stats['images']} scenes with {stats['faces']} faces to {out} ({', '.join(files)})")
    return 0


def _write_as(fmt: str, out: Path, images: int, seed: int, size: tuple[int, int]) -> dict:
    """Scenes written as COCO in a scratch folder beside ``out``, then converted (images hard-linked)."""
    import tempfile

    from acfd.training.data.annotations import load_detection_set
    from acfd.training.data.annotations_write import write_set

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".synth-", dir=out.parent) as scratch:
        write_dataset(scratch, images, seed, size)
        scenes = load_detection_set(Path(scratch) / "annotations.json")
        scenes.source = f"acfd synth --images {images} --seed {seed} --size {size[0]}x{size[1]}"
        report = write_set(scenes, fmt, out)
    return {"images": report.images, "faces": report.faces, "files": report.files}


def write_contact_sheet(
    data_dir: Path, out_png: Path, count: int = 12, columns: int = 4, tile_width: int = 320
) -> None:
    """Grid of the first ``count`` scenes of a data set with their face boxes drawn in green."""
    from acfd.training.data.annotations import load_detection_set
    from acfd.inference.image_io import read_image

    records = load_detection_set(data_dir).records[:count]
    tiles = []
    for rec in records:
        image = np.ascontiguousarray(read_image(rec.path))
        for x1, y1, x2, y2 in np.round(rec.boxes).astype(int):
            cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), (0, 255, 0), 2)
        scale = tile_width / image.shape[1]
        tiles.append(cv2.resize(image, (tile_width, round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA))
    if not tiles:
        raise OSError(0, "no images to show", str(out_png))
    h = max(t.shape[0] for t in tiles)
    tiles = [
        cv2.copyMakeBorder(t, 2, h - t.shape[0] + 2, 2, 2, cv2.BORDER_CONSTANT, value=(255, 255, 255)) for t in tiles
    ]
    blank = np.full_like(tiles[0], 255)
    tiles += [blank] * (-len(tiles) % columns)
    sheet = np.vstack([np.hstack(tiles[i : i + columns]) for i in range(0, len(tiles), columns)])
    ok, buf = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    out_png.write_bytes(buf.tobytes())
