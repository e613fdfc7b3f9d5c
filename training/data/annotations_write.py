"""Writing a loaded data set in any of the four formats: ``write_set(ds, to, out) -> WriteReport``.

``out`` must be a new or empty folder; it gets the images (hard-linked where the file system allows,
else copied) and the annotations, laid out so that ``load_detection_set(out)`` finds them:

- ``coco``: ``annotations.json`` + ``images/``; ignore regions as ``iscrowd: 1`` boxes; images
  without faces listed with no boxes.
- ``csv``: ``annotations.csv`` (``name,x1,y1,x2,y2``, iCartoonFace) + ``images/``. The format holds
  neither images without faces nor ignore regions: those are left out and counted in the report.
- ``yolo``: ``data.yaml`` (``train`` and ``val``: ``images``, ``names``) + ``images/`` + ``labels/``
  (``class cx cy w h`` normalised, 6 decimals: within 0.005 px for images up to 8192 px); images without faces get an
  empty label file. Ignore regions are left out and counted.
- ``voc``: ``Annotations/*.xml`` + ``JPEGImages/``; ignore regions as ``difficult`` objects, boxes in the
  VOC devkit's 1-based convention (see ``annotations_voc``).

Pixel coordinates are written with at most 4 decimals (whole numbers without any), which gives back
the same float32 value for any box inside an 8192-pixel image. Image names are the files' own
names, or their paths below the common folder with ``/`` turned into ``_`` when two share a name.
The class is written under the set's own class name (``face`` when it has none).
"""

from __future__ import annotations

import json
import os
import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from acfd.training.data.annotations import DetectionSet, ImageRecord

TARGETS = ("coco", "csv", "yolo", "voc")


@dataclass
class WriteReport:
    out: Path
    format: str
    images: int = 0
    faces: int = 0
    ignore_regions: int = 0
    files: list[str] = field(default_factory=list)  # what was written at the top of ``out``
    lost: list[str] = field(default_factory=list)  # what the format could not hold, as "N things"


def write_set(ds: DetectionSet, to: str, out: str | Path) -> WriteReport:
    if to not in TARGETS:
        raise ValueError(f"unknown target format {to!r}; choose one of {', '.join(TARGETS)}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out}: exists and is not an empty folder; choose a new one")
    out.mkdir(parents=True, exist_ok=True)
    report = WriteReport(out, to)
    names = image_names(ds.records)
    writer = {"coco": _write_coco, "csv": _write_csv, "yolo": _write_yolo, "voc": _write_voc}[to]
    writer(ds, names, out, report)
    return report


def image_names(records: list[ImageRecord]) -> list[str]:
    """One unique file name per record (see the module docstring)."""
    plain = [r.path.name for r in records]
    if len(set(plain)) == len(plain):
        return plain
    root = Path(os.path.commonpath([str(r.path.parent.resolve()) for r in records]))
    return [str(r.path.resolve().relative_to(root)).replace(os.sep, "_") for r in records]


def num(value: float) -> str:
    """A coordinate as text: whole numbers plain, others with at most 4 decimals."""
    value = float(value)
    if value == round(value):
        return str(int(round(value)))
    return f"{value:.4f}".rstrip("0").rstrip(".")


def _place(image: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(image, target)
    except OSError:
        shutil.copyfile(image, target)


def _class_name(ds: DetectionSet) -> str:
    return ds.class_name or "face"


def _write_coco(ds: DetectionSet, names: list[str], out: Path, report: WriteReport) -> None:
    images, anns = [], []
    for i, (rec, name) in enumerate(zip(ds.records, names), start=1):
        _place(rec.path, out / "images" / name)
        images.append({"id": i, "file_name": name, "width": rec.width, "height": rec.height})
        for crowd, boxes in ((0, rec.boxes), (1, rec.ignore)):
            for x1, y1, x2, y2 in boxes.tolist():
                w, h = x2 - x1, y2 - y1
                anns.append(
                    {
                        "id": len(anns) + 1,
                        "image_id": i,
                        "category_id": 1,
                        "bbox": [_json_num(x1), _json_num(y1), _json_num(w), _json_num(h)],
                        "area": round(w * h, 4),
                        "iscrowd": crowd,
                    }
                )
        report.faces += len(rec.boxes)
        report.ignore_regions += len(rec.ignore)
    report.images = len(images)
    name = _class_name(ds)
    data = {
        "info": {"description": f"written by acfd from {ds.source}"},
        "images": images,
        "annotations": anns,
        "categories": [{"id": 1, "name": name, "supercategory": name}],
    }
    (out / "annotations.json").write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    report.files = ["annotations.json", "images/"]


def _json_num(value: float) -> int | float:
    text = num(value)
    return int(text) if text.lstrip("-").isdigit() else float(text)


def _write_csv(ds: DetectionSet, names: list[str], out: Path, report: WriteReport) -> None:
    lines, negatives, ignored = [], 0, 0
    for rec, name in zip(ds.records, names):
        ignored += len(rec.ignore)
        if len(rec.boxes) == 0:
            negatives += 1
            continue
        _place(rec.path, out / "images" / name)
        lines += [f"{name},{','.join(num(v) for v in box)}\n" for box in rec.boxes.tolist()]
        report.images += 1
        report.faces += len(rec.boxes)
    (out / "annotations.csv").write_text("".join(lines), encoding="utf-8")
    report.files = ["annotations.csv", "images/"]
    if negatives:
        report.lost.append(f"{negatives} images without faces")
    if ignored:
        report.lost.append(f"{ignored} ignore regions")


def _write_yolo(ds: DetectionSet, names: list[str], out: Path, report: WriteReport) -> None:
    (out / "labels").mkdir()
    ignored = 0
    for rec, name in zip(ds.records, names):
        _place(rec.path, out / "images" / name)
        lines = []
        for x1, y1, x2, y2 in rec.boxes.tolist():
            cx, cy = (x1 + x2) / 2 / rec.width, (y1 + y2) / 2 / rec.height
            w, h = (x2 - x1) / rec.width, (y2 - y1) / rec.height
            lines.append(f"0 {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
        (out / "labels" / Path(name).with_suffix(".txt")).write_text("".join(lines), encoding="utf-8")
        ignored += len(rec.ignore)
        report.images += 1
        report.faces += len(rec.boxes)
    data = {"path": ".", "train": "images", "val": "images", "names": {0: _class_name(ds)}}
    (out / "data.yaml").write_text(
        f"# written by acfd from {ds.source}\n"
        "# one set: train and val name the same images (split it before training on it)\n" + _yaml(data),
        encoding="utf-8",
    )
    report.files = ["data.yaml", "images/", "labels/"]
    if ignored:
        report.lost.append(f"{ignored} ignore regions")


def _yaml(data: dict) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _write_voc(ds: DetectionSet, names: list[str], out: Path, report: WriteReport) -> None:
    (out / "Annotations").mkdir()
    label = _class_name(ds)
    for rec, name in zip(ds.records, names):
        _place(rec.path, out / "JPEGImages" / name)
        root = ET.Element("annotation")
        _sub(root, "folder", "JPEGImages")
        _sub(root, "filename", name)
        size = _sub(root, "size")
        for tag, value in (("width", rec.width), ("height", rec.height), ("depth", 3)):
            _sub(size, tag, str(value))
        _sub(root, "segmented", "0")
        for difficult, boxes in ((0, rec.boxes), (1, rec.ignore)):
            for x1, y1, x2, y2 in boxes.tolist():
                obj = _sub(root, "object")
                for tag, value in (
                    ("name", label),
                    ("pose", "Unspecified"),
                    ("truncated", "0"),
                    ("difficult", str(difficult)),
                ):
                    _sub(obj, tag, value)
                bndbox = _sub(obj, "bndbox")
                for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), (x1 + 1, y1 + 1, x2, y2)):
                    _sub(bndbox, tag, num(value))
        ET.indent(root)
        xml = ET.tostring(root, encoding="unicode")
        (out / "Annotations" / Path(name).with_suffix(".xml")).write_text(
            f'<?xml version="1.0" encoding="utf-8"?>\n{xml}\n', encoding="utf-8"
        )
        report.images += 1
        report.faces += len(rec.boxes)
        report.ignore_regions += len(rec.ignore)
    report.files = ["Annotations/", "JPEGImages/"]


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    element = ET.SubElement(parent, tag)
    if text is not None:
        element.text = text
    return element
