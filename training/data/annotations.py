"""Face-box annotations in four formats: ``load_detection_set``.

Contract:

- ``path`` is a COCO JSON file, an iCartoonFace CSV, a YOLO ``data.yaml`` or folder, a Pascal VOC
  folder or XML file, or a folder holding one of them. The format is detected (``detect_format``)
  unless ``format`` names it (``coco``, ``csv``, ``yolo``, ``voc``). A missing path raises
  ``FileNotFoundError``; a file that cannot be parsed as a whole, or whose class is ambiguous, raises
  ``ValueError``. Both messages name the file.
- iCartoonFace CSV: one face per line, no header, ``image_name,x1,y1,x2,y2`` or with a sixth label
  column (``face``), pixels. Images are looked up in ``images_dir`` when given, else beside the CSV,
  else in an ``images/`` folder beside it. An image appears only through its boxes, so the CSV form
  cannot hold images without faces.
- COCO: ``images`` (``id``, ``file_name``), ``annotations`` (``image_id``, ``bbox`` = x, y, w, h,
  ``category_id``, optional ``iscrowd``), ``categories``. With one category, or one named ``face``,
  it is used; otherwise ``category`` (a name or an id) must choose. Crowd boxes become ignore
  regions (counted in ``crowd``). Images without boxes are kept as negatives. File names resolve
  like CSV image names.
- YOLO and VOC: see ``annotations_yolo`` and ``annotations_voc``. ``split`` chooses a split where
  the set names them (YOLO ``data.yaml``: ``train`` by default; VOC ``ImageSets/Main/SPLIT.txt``).
- Ignore regions (COCO ``iscrowd``, VOC ``difficult``) are kept in ``ImageRecord.ignore``: neither
  faces nor background in training, neither hits nor misses in evaluation. ``keep_ignore=False``
  skips them instead (they are counted either way, and ``summary()`` says which was done).
- Anything wrong with one line or entry is recorded in ``problems`` as ``"file:line: what"`` (CSV,
  YOLO) or ``"file: annotations[i]: what"`` (COCO, VOC: ``file: object[i]``) and that line or entry
  is skipped. Missing and unreadable images are reported once and skipped with their boxes.
- Boxes are float32 ``[N, 4]`` ``(x1, y1, x2, y2)`` in continuous pixel coordinates, clipped to the
  image (counted in ``clipped``); boxes with no area left (empty, inverted or outside the image)
  are dropped, counted in ``dropped`` and reported. Ignore regions are clipped and dropped the same
  way.
- Image sizes come from file headers (``image_io.image_size``), not full decodes, so that large sets
  load in seconds; ``verify=True`` decodes every image instead (slow, catches truncated files). A
  header claiming more than ``image_io.MAX_PIXELS`` pixels counts as unreadable. When a file's own
  ``width``/``height`` (COCO, VOC ``size``) disagree with the image, the image wins and the
  mismatch is reported.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from acfd.inference.image_io import MAX_PIXELS, ImageError, image_size, read_image

SIZE_BINS = (0.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, math.inf)  # sqrt(w * h), pixels
ASPECT_BINS = (0.0, 1 / 3, 1 / 2, 2 / 3, 3 / 2, 2.0, 3.0, math.inf)  # w / h


def no_boxes() -> np.ndarray:
    return np.zeros((0, 4), np.float32)


@dataclass
class ImageRecord:
    path: Path
    boxes: np.ndarray  # float32 [N, 4] x1, y1, x2, y2 in pixels, clipped to the image
    width: int
    height: int
    ignore: np.ndarray = field(default_factory=no_boxes)  # float32 [M, 4] ignore regions, same convention


@dataclass
class DetectionSet:
    records: list[ImageRecord]
    problems: list[str] = field(default_factory=list)  # "file:line: what"
    source: str = ""
    format: str = ""  # "coco", "icartoonface-csv", "yolo" or "voc"
    clipped: int = 0  # boxes partly outside their image, clipped to it
    dropped: int = 0  # boxes with no area (empty, inverted, or wholly outside the image)
    bad_entries: int = 0  # lines / entries that could not be parsed
    missing_images: int = 0
    unreadable_images: int = 0
    crowd: int = 0  # COCO iscrowd boxes (ignore regions, or skipped with keep_ignore=False)
    difficult: int = 0  # VOC difficult objects (the same)
    keep_ignore: bool = True  # crowd / difficult boxes kept as ignore regions (False: skipped)
    other_category: int = 0  # boxes of another category skipped
    orphan_labels: int = 0  # YOLO label files without an image
    class_name: str = ""  # the class kept, where the format names classes
    split: str = ""  # the split read, where the format names splits

    @property
    def images(self) -> int:
        return len(self.records)

    @property
    def faces(self) -> int:
        return sum(len(r.boxes) for r in self.records)

    @property
    def negatives(self) -> int:
        return sum(1 for r in self.records if len(r.boxes) == 0)

    @property
    def ignore_regions(self) -> int:
        return sum(len(r.ignore) for r in self.records)

    def all_boxes(self) -> np.ndarray:
        return np.concatenate([r.boxes for r in self.records] + [no_boxes()])

    def summary(self) -> dict:
        """Counters, image sizes and face size / aspect-ratio histograms as plain JSON-ready values."""
        boxes = self.all_boxes()
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        sizes = Counter(f"{r.width}x{r.height}" for r in self.records)
        per_image = [len(r.boxes) for r in self.records]
        return {
            "source": self.source,
            "format": self.format,
            "split": self.split,
            "images": self.images,
            "faces": self.faces,
            "negatives": self.negatives,
            "max_faces_per_image": max(per_image, default=0),
            "clipped": self.clipped,
            "dropped": self.dropped,
            "bad_entries": self.bad_entries,
            "missing_images": self.missing_images,
            "unreadable_images": self.unreadable_images,
            "crowd": self.crowd,
            "difficult": self.difficult,
            "ignore_regions": self.ignore_regions,
            "ignore_kept": self.keep_ignore,
            "other_category": self.other_category,
            "orphan_labels": self.orphan_labels,
            "class_name": self.class_name,
            "image_sizes": [{"size": s, "images": n} for s, n in sizes.most_common(5)],
            "face_size_median": float(np.median(np.sqrt(w * h))) if len(boxes) else None,
            "size_histogram": histogram(np.sqrt(w * h), SIZE_BINS),
            "aspect_histogram": histogram(w / np.maximum(h, 1e-6), ASPECT_BINS),
            "problems": list(self.problems),
        }


def histogram(values: np.ndarray, edges: tuple[float, ...]) -> list[dict]:
    """``[{"low", "high", "count"}]`` for half-open bins ``[low, high)``."""
    idx = np.searchsorted(np.asarray(edges[1:-1]), values, side="right")
    counts = np.bincount(idx, minlength=len(edges) - 1)
    return [
        {"low": lo, "high": hi if math.isfinite(hi) else None, "count": int(c)}
        for lo, hi, c in zip(edges[:-1], edges[1:], counts)
    ]


FORMATS = ("coco", "csv", "yolo", "voc")


def load_detection_set(
    path: str | Path,
    images_dir: str | Path | None = None,
    category: str | None = None,
    progress: bool = False,
    verify: bool = False,
    format: str | None = None,
    split: str | None = None,
    keep_ignore: bool = True,
) -> DetectionSet:
    """Load a data set in any of ``FORMATS`` (see the module docstring); ``format`` forces one."""
    from acfd.training.data.data_format import detect_format

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if images_dir is not None and not Path(images_dir).is_dir():
        raise FileNotFoundError(f"{images_dir}: image folder not found")
    kind, path = detect_format(path, format)
    if kind == "yolo":
        from acfd.training.data.annotations_yolo import load_yolo as load
    elif kind == "voc":
        from acfd.training.data.annotations_voc import load_voc as load
    else:
        load = _load_coco if kind == "coco" else _load_csv
    build = Builder.for_file(path, images_dir, verify)
    build.ds.keep_ignore = keep_ignore
    return load(path, build, category, progress, split)


def split_records(
    records: list[ImageRecord], holdout: float, seed: int = 0
) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """Split into (kept, held out) with a fixed seeded shuffle; ``holdout`` is a fraction in [0, 1)."""
    if not 0.0 <= holdout < 1.0:
        raise ValueError(f"holdout fraction must be in [0, 1), got {holdout}")
    order = np.random.default_rng(seed).permutation(len(records))
    n_out = int(round(len(records) * holdout))
    out = set(order[:n_out].tolist())
    return [r for i, r in enumerate(records) if i not in out], [r for i, r in enumerate(records) if i in out]


def _resolver(ann_file: Path, images_dir: str | Path | None):
    roots = [Path(images_dir)] if images_dir is not None else [ann_file.parent, ann_file.parent / "images"]

    def resolve(name: str) -> Path | None:
        for root in roots:
            p = root / name
            if p.is_file():
                return p
        return None

    where = " or ".join(str(r) for r in roots)
    return resolve, where


class Builder:
    """Collects boxes per image, resolving and sizing each image once (shared by all the loaders).

    ``resolve(name) -> Path | None`` finds an image by the name the annotations use; ``where`` says
    where it looked, for the "not found" message.
    """

    def __init__(self, source: str, resolve, where: str, verify: bool):
        self.ds = DetectionSet([], source=source)
        self.verify = verify
        self.resolve, self.where = resolve, where
        self.records: dict[str, ImageRecord | None] = {}
        self.boxes: dict[str, list[list[float]]] = {}
        self.ignores: dict[str, list[list[float]]] = {}
        self.images_dir: Path | None = None  # --images, for loaders that resolve images their own way

    @classmethod
    def for_file(cls, ann_file: Path, images_dir, verify: bool) -> "Builder":
        """Images named relative to ``images_dir``, else the annotation file's folder or its ``images/``."""
        resolve, where = _resolver(ann_file, images_dir)
        build = cls(str(ann_file), resolve, where, verify)
        build.images_dir = Path(images_dir) if images_dir is not None else None
        return build

    def image(self, name: str, where: str, expect: tuple[int, int] | None = None) -> ImageRecord | None:
        if name in self.records:
            return self.records[name]
        rec = None
        path = self.resolve(name)
        if path is None:
            self.ds.missing_images += 1
            self.ds.problems.append(f"{where}: image {name!r} not found in {self.where}")
        else:
            try:
                width, height = self._size(path)
                rec = ImageRecord(path, np.zeros((0, 4), np.float32), int(width), int(height))
                self.boxes[name], self.ignores[name] = [], []
                if expect is not None and expect != (width, height):
                    self.ds.problems.append(
                        f"{where}: {name} is {width}x{height}, the file says {expect[0]}x{expect[1]}; "
                        f"using {width}x{height}"
                    )
            except ImageError as err:
                self.ds.unreadable_images += 1
                self.ds.problems.append(f"{where}: unreadable image: {err}")
        self.records[name] = rec
        return rec

    def _size(self, path: Path) -> tuple[int, int]:
        if self.verify:
            image = read_image(path)
            return image.shape[1], image.shape[0]
        width, height = image_size(path)
        if width * height > MAX_PIXELS:
            raise ImageError(
                f"{path}: header says {width}x{height}, beyond the {MAX_PIXELS}-pixel limit (corrupt header?)"
            )
        return width, height

    def add_box(self, name: str, rec: ImageRecord, box: list[float], where: str, ignore: bool = False) -> None:
        """Clip ``box`` to the image and keep it as a face (or an ignore region), or drop and report it."""
        x1, y1, x2, y2 = box
        what = "ignore region" if ignore else "box"
        if not (x2 > x1 and y2 > y1):
            self.ds.dropped += 1
            self.ds.problems.append(f"{where}: empty or inverted {what} ({fmt_box(box)}): needs x2 > x1 and y2 > y1")
            return
        c = [
            min(max(x1, 0.0), rec.width),
            min(max(y1, 0.0), rec.height),
            min(max(x2, 0.0), rec.width),
            min(max(y2, 0.0), rec.height),
        ]
        if not (c[2] > c[0] and c[3] > c[1]):
            self.ds.dropped += 1
            self.ds.problems.append(f"{where}: {what} ({fmt_box(box)}) lies outside the {rec.width}x{rec.height} image")
            return
        if c != [x1, y1, x2, y2]:
            self.ds.clipped += 1
        (self.ignores if ignore else self.boxes)[name].append(c)

    def finish(self) -> DetectionSet:
        for name, rec in self.records.items():
            if rec is not None:
                rec.boxes = np.asarray(self.boxes[name], np.float32).reshape(-1, 4)
                rec.ignore = np.asarray(self.ignores[name], np.float32).reshape(-1, 4)
                self.ds.records.append(rec)
        return self.ds


def fmt_box(box) -> str:
    return ", ".join(f"{v:g}" for v in box)


def _load_csv(path: Path, build: Builder, category: str | None, progress: bool, split: str | None) -> DetectionSet:
    ds = build.ds
    ds.format = "icartoonface-csv"
    ds.class_name = category or ""
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as err:
        raise ValueError(f"{path}: cannot read ({err.strerror or err})") from err
    lines = text.splitlines()
    for number, line in enumerate(tqdm(lines, desc="check", unit="line", disable=not progress), start=1):
        where = f"{path}:{number}"
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) not in (5, 6) or not fields[0]:
            ds.bad_entries += 1
            ds.problems.append(
                f"{where}: expected 5 or 6 comma-separated fields (image,x1,y1,x2,y2[,label]), got {len(fields)}"
            )
            continue
        if len(fields) == 6 and category is not None and fields[5] != category:
            ds.other_category += 1
            continue
        box = parse_numbers(fields[1:5])
        if isinstance(box, str):
            ds.bad_entries += 1
            ds.problems.append(f"{where}: {box}")
            continue
        rec = build.image(fields[0], where)
        if rec is not None:
            build.add_box(fields[0], rec, box, where)
    return build.finish()


def parse_numbers(fields, names=("x1", "y1", "x2", "y2")) -> list[float] | str:
    """Finite numbers, one per name, or a message saying which field is wrong."""
    out = []
    for name, text in zip(names, fields):
        try:
            value = float(text)
        except (TypeError, ValueError):
            return f"{name} = {str(text)[:40]!r} is not a number"
        if not math.isfinite(value):
            return f"{name} = {text!r} is not a finite number"
        out.append(value)
    return out


def _load_coco(path: Path, build: Builder, category: str | None, progress: bool, split: str | None) -> DetectionSet:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as err:
        raise ValueError(f"{path}: cannot read ({err.strerror or err})") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"{path}: not a COCO detection file (no 'images' list)")
    anns = data.get("annotations", [])
    if not isinstance(anns, list):
        raise ValueError(f"{path}: 'annotations' must be a list")
    category_id = choose_category(path, data.get("categories") or [], category)
    ds = build.ds
    ds.format = "coco"
    ds.class_name = next(
        (
            str(c.get("name"))
            for c in data.get("categories") or []
            if isinstance(c, dict) and c.get("id") == category_id
        ),
        "",
    )
    names: dict[object, str] = {}
    for i, entry in enumerate(tqdm(data["images"], desc="check", unit="img", disable=not progress)):
        where = f"{path}: images[{i}]"
        if not isinstance(entry, dict) or "id" not in entry or not isinstance(entry.get("file_name"), str):
            ds.bad_entries += 1
            ds.problems.append(f"{where}: needs an 'id' and a 'file_name'")
            continue
        if entry["id"] in names:
            ds.bad_entries += 1
            ds.problems.append(f"{where}: duplicate image id {entry['id']!r}")
            continue
        names[entry["id"]] = entry["file_name"]
        w, h = entry.get("width"), entry.get("height")
        expect = (int(w), int(h)) if isinstance(w, (int, float)) and isinstance(h, (int, float)) else None
        build.image(entry["file_name"], where, expect)
    for i, ann in enumerate(anns):
        where = f"{path}: annotations[{i}]"
        if not isinstance(ann, dict) or ann.get("image_id") not in names:
            ds.bad_entries += 1
            ds.problems.append(
                f"{where}: image_id {ann.get('image_id') if isinstance(ann, dict) else None!r} is not in 'images'"
            )
            continue
        if category_id is not None and ann.get("category_id") != category_id:
            ds.other_category += 1
            continue
        crowd = bool(ann.get("iscrowd"))
        if crowd:
            ds.crowd += 1
            if not ds.keep_ignore:
                continue
        bbox = ann.get("bbox")
        values = (
            parse_numbers(bbox) if isinstance(bbox, list) and len(bbox) == 4 else "bbox must be [x, y, width, height]"
        )
        if isinstance(values, str):
            ds.bad_entries += 1
            ds.problems.append(f"{where}: {values}")
            continue
        name = names[ann["image_id"]]
        rec = build.records.get(name)
        if rec is not None:
            x, y, w, h = values
            build.add_box(name, rec, [x, y, x + w, y + h], where, ignore=crowd)
    return build.finish()


def choose_category(path: Path, categories: list, wanted: str | None):
    """The category id to keep (None: keep all, when the file lists no categories)."""
    cats = [c for c in categories if isinstance(c, dict) and "id" in c]
    if wanted is not None:
        for c in cats:
            if str(c.get("name")) == wanted or str(c["id"]) == wanted:
                return c["id"]
        listed = ", ".join(f"{c.get('name')} (id {c['id']})" for c in cats) or "none"
        raise ValueError(f"{path}: no category {wanted!r}; categories: {listed}")
    if not cats:
        return None
    if len(cats) == 1:
        return cats[0]["id"]
    faces = [c for c in cats if str(c.get("name", "")).lower() == "face"]
    if len(faces) == 1:
        return faces[0]["id"]
    listed = ", ".join(f"{c.get('name')} (id {c['id']})" for c in cats[:10])
    raise ValueError(f"{path}: several categories ({listed}); choose one with --category")
