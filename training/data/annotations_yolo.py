"""YOLO folders (ultralytics, Roboflow and darknet exports): ``load_yolo(path, build, category, progress, split)``.

Layouts (``path`` is the YAML file or the folder):

- A ``data.yaml``: ``path`` (optional data root, relative to the YAML's folder), ``train`` / ``val`` /
  ``test`` (each a folder of images, a ``.txt`` file listing image paths, or a list of those; relative
  to the root), ``names`` (a list, or a mapping id -> name) and optional ``nc``. ``split`` chooses one
  (default ``train``); a split the file does not name is an error that lists those it does.
- A folder holding ``images/`` and ``labels/`` side by side (``split`` does not apply). Class names
  come from a ``classes.txt`` (one name a line, labelImg's convention) in the folder or in
  ``labels/``, when there is one.

Labels: the label file of ``.../images/a/b.jpg`` is ``.../labels/a/b.txt`` (the last ``images``
folder of the path replaced by ``labels``, as ultralytics does). A line is ``class cx cy w h``,
normalised to 0..1 by the image's own width and height; a polygon line ``class x1 y1 x2 y2 x3 y3
...`` (segmentation labels) counts as its bounding box. An image without a label file, or with an
empty one, is a negative. A label file without an image (folder layouts) is reported and counted in
``orphan_labels``. Coordinates outside 0..1 make the line bad (they are usually pixels).

Class: one is kept. With one name, or exactly one named ``face``, it is that one; with several,
``category`` (a name or an id) must choose; without names, every class is kept unless ``category``
(an id) chooses. Lines of other classes are counted in ``other_category``.
"""

from __future__ import annotations

import math
from pathlib import Path

import yaml
from tqdm import tqdm

from acfd.training.data.annotations import Builder, DetectionSet, parse_numbers

IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
SPLITS = ("train", "val", "test")
SNAP = 0.01  # px


def load_yolo(path: Path, build: Builder, category: str | None, progress: bool, split: str | None) -> DetectionSet:
    ds = build.ds
    ds.format = "yolo"
    if build.images_dir is not None:
        raise ValueError(f"{path}: --images does not apply to YOLO sets (images are where the layout puts them)")
    if path.is_file():
        ds.split = split or "train"
        images, label_dirs, names = _from_yaml(path, ds.split, ds)
    else:
        images, label_dirs, names = _from_folder(path)
        ds.source = str(path)
    class_id = _choose_class(path, names, category)
    ds.class_name = names.get(class_id, "" if class_id is None else str(class_id))
    build.resolve = lambda name: Path(name) if Path(name).is_file() else None
    seen_labels: set[Path] = set()
    for image, where in tqdm(images, desc="check", unit="img", disable=not progress):
        rec = build.image(str(image), where)
        label = label_path(image)
        if rec is None or label in seen_labels:
            continue
        seen_labels.add(label)
        if label.is_file():
            _read_labels(label, str(image), rec, class_id, build)
    for folder in label_dirs:
        for label in sorted(folder.rglob("*.txt")):
            if label not in seen_labels and label.name != "classes.txt":
                ds.orphan_labels += 1
                ds.problems.append(f"{label}: label file without an image (no {label.stem}.* in the images folder)")
    return build.finish()


def label_path(image: Path) -> Path:
    """``.../images/x/y.jpg`` -> ``.../labels/x/y.txt`` (the last ``images`` part of the path)."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _read_labels(label: Path, name: str, rec, class_id: int | None, build: Builder) -> None:
    ds = build.ds
    try:
        text = label.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as err:
        ds.bad_entries += 1
        ds.problems.append(f"{label}: cannot read ({err.strerror or err})")
        return
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{label}:{number}"
        fields = line.split()
        if not fields:
            continue
        box = _parse_line(fields)
        if isinstance(box, str):
            ds.bad_entries += 1
            ds.problems.append(f"{where}: {box}")
            continue
        cls, (cx, cy, w, h) = box
        if class_id is not None and cls != class_id:
            ds.other_category += 1
            continue
        W, H = rec.width, rec.height
        box = [(cx - w / 2) * W, (cy - h / 2) * H, (cx + w / 2) * W, (cy + h / 2) * H]
        build.add_box(name, rec, [_snap(v, side) for v, side in zip(box, (W, H, W, H))], where)


def _snap(value: float, side: int) -> float:
    """Within ``SNAP`` px outside the image is rounding of the normalised text (6 decimals), not a box
    crossing the border: put it on the border so that it is not counted as clipped."""
    return 0.0 if -SNAP < value < 0 else float(side) if side < value < side + SNAP else value


def _parse_line(fields: list[str]) -> tuple[int, list[float]] | str:
    """``(class id, [cx, cy, w, h])`` normalised, or a message saying what is wrong with the line."""
    if len(fields) != 5 and (len(fields) < 7 or len(fields) % 2 == 0):
        return (
            "expected 'class cx cy w h' (5 fields) or a polygon 'class x1 y1 x2 y2 x3 y3 ...', "
            f"got {len(fields)} fields"
        )
    try:
        cls = float(fields[0])
    except ValueError:
        cls = math.nan
    if not (math.isfinite(cls) and cls >= 0 and cls == int(cls)):
        return f"class {fields[0][:20]!r} is not a class id (0, 1, ...)"
    names = (
        ("cx", "cy", "w", "h")
        if len(fields) == 5
        else tuple(f"{'xy'[i % 2]}{i // 2 + 1}" for i in range(len(fields) - 1))
    )
    values = parse_numbers(fields[1:], names)
    if isinstance(values, str):
        return values
    bad = [f"{n} {v:g}" for n, v in zip(names, values) if not -1e-6 <= v <= 1 + 1e-6]
    if bad:
        return f"coordinates must be normalised to 0..1 by the image size (got {', '.join(bad[:3])}; pixels?)"
    if len(fields) > 5:
        xs, ys = values[0::2], values[1::2]
        values = [(min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, max(xs) - min(xs), max(ys) - min(ys)]
    return int(cls), values


def _from_yaml(path: Path, split: str, ds: DetectionSet):
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except OSError as err:
        raise ValueError(f"{path}: cannot read ({err.strerror or err})") from err
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a YOLO data.yaml (expected train/val/test and names)")
    present = [s for s in SPLITS if data.get(s)]
    if not data.get(split):
        raise ValueError(f"{path}: no {split!r} split (it names: {', '.join(present) or 'none'})")
    root = path.parent / str(data.get("path") or "")
    if not root.is_dir():
        raise FileNotFoundError(f"{path}: data root {root} (its 'path') is not a folder")
    entries = data[split] if isinstance(data[split], list) else [data[split]]
    images, label_dirs = [], []
    for entry in entries:
        target = root / str(entry)
        if target.is_dir():
            images += [(p, str(path)) for p in _image_files(target)]
            label_dirs.append(label_path(target / "x").parent)
        elif target.is_file():
            images += _listed(target, root, ds)
        else:
            raise FileNotFoundError(f"{path}: {split} entry {entry!r} is neither a folder nor a list file ({target})")
    label_dirs = [d for d in label_dirs if d.is_dir()]
    return images, label_dirs, _names(path, data.get("names"), data.get("nc"))


def _listed(list_file: Path, root: Path, ds: DetectionSet) -> list[tuple[Path, str]]:
    """Images named one a line by a split list (relative to the data root, or absolute)."""
    out = []
    for number, line in enumerate(list_file.read_text(encoding="utf-8-sig", errors="replace").splitlines(), start=1):
        name = line.strip()
        if name:
            candidate = root / name if not Path(name).is_absolute() else Path(name)
            if not candidate.is_file() and (list_file.parent / name).is_file():
                candidate = list_file.parent / name
            out.append((candidate, f"{list_file}:{number}"))
    return out


def _from_folder(folder: Path):
    images = [(p, str(folder / "images")) for p in _image_files(folder / "images")]
    names: dict[int, str] = {}
    for classes in (folder / "classes.txt", folder / "labels" / "classes.txt"):
        if classes.is_file():
            lines = [ln.strip() for ln in classes.read_text(encoding="utf-8-sig", errors="replace").splitlines()]
            names = {i: n for i, n in enumerate(ln for ln in lines if ln)}
            break
    return images, [folder / "labels"], names


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _names(path: Path, names, nc) -> dict[int, str]:
    if names is None:
        return {i: str(i) for i in range(int(nc))} if isinstance(nc, int) else {}
    if isinstance(names, list):
        return {i: str(n) for i, n in enumerate(names)}
    if isinstance(names, dict):
        try:
            return {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError):
            raise ValueError(f"{path}: 'names' keys must be class ids (0, 1, ...)") from None
    raise ValueError(f"{path}: 'names' must be a list or a mapping of class id to name")


def _choose_class(path: Path, names: dict[int, str], wanted: str | None) -> int | None:
    if wanted is not None:
        for i, n in names.items():
            if n == wanted or str(i) == wanted:
                return i
        if not names and wanted.isdigit():
            return int(wanted)
        listed = ", ".join(f"{n} (id {i})" for i, n in names.items()) or "none named"
        raise ValueError(f"{path}: no class {wanted!r}; classes: {listed}")
    if len(names) <= 1:
        return next(iter(names), None)
    faces = [i for i, n in names.items() if n.lower() == "face"]
    if len(faces) == 1:
        return faces[0]
    listed = ", ".join(f"{n} (id {i})" for i, n in list(names.items())[:10])
    raise ValueError(f"{path}: several classes ({listed}); choose one with --category")
