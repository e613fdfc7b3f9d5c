"""Pascal VOC annotations (labelImg, CVAT and most annotation tools).

``load_voc(path, build, category, progress, split)``.

Layout: ``path`` is a VOC folder (``Annotations/*.xml`` beside ``JPEGImages/``), a folder of ``*.xml``
files, or one XML file. With ``split``, ``ImageSets/Main/SPLIT.txt`` (one id a line) chooses the
annotation files when the folder has it; otherwise every ``*.xml`` is read.

One XML file per image: ``filename``, ``size`` (``width``, ``height``), and ``object`` elements with
``name``, ``difficult`` and ``bndbox`` (``xmin``, ``ymin``, ``xmax``, ``ymax``). The image is looked
up in ``--images`` when given, else in ``JPEGImages/``, beside the XML file, or in ``images/``
(with ``.jpg`` / ``.png`` added when ``filename`` has no suffix; the XML's own name when it has no
``filename``).

Coordinates follow the VOC devkit: 1-based pixel indices with ``xmax`` inclusive, so the box in
continuous pixels is ``(xmin - 1, ymin - 1, xmax, ymax)`` (detectron2 reads them the same way);
``annotations_write`` writes them back the same way. ``difficult`` objects are ignore regions
(``keep_ignore=False``: skipped), counted in ``difficult``.

Class: names are compared as written (non-ASCII included). With one name in the whole set, or
exactly one named ``face`` (any case), it is kept; otherwise ``category`` must name one. Objects of
other classes are counted in ``other_category``. Problems are ``file.xml:line: what``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from xml.parsers import expat

from tqdm import tqdm

from acfd.training.data.annotations import Builder, DetectionSet, parse_numbers

BOX_TAGS = ("xmin", "ymin", "xmax", "ymax")
SUFFIXES = (".jpg", ".png", ".jpeg", ".bmp")


def load_voc(path: Path, build: Builder, category: str | None, progress: bool, split: str | None) -> DetectionSet:
    ds = build.ds
    ds.format = "voc"
    root = path.parent.parent if path.is_file() and path.parent.name == "Annotations" else path
    xml_files = _annotation_files(path, root, split, ds)
    parsed = []
    for xml_file in tqdm(xml_files, desc="check", unit="xml", disable=not progress):
        tree = _read(xml_file, ds)
        if tree is not None:
            parsed.append((xml_file, *tree))
    names = Counter(_text(obj, "name") for _, tree, _ in parsed for obj in tree.iter("object"))
    wanted = _choose_name(path, names, category)
    ds.class_name = wanted or ""
    dirs = [build.images_dir] if build.images_dir is not None else [root / "JPEGImages", None, root / "images"]
    for xml_file, tree, lines in parsed:
        _add_image(xml_file, tree, lines, wanted, dirs, build)
    return build.finish()


def _annotation_files(path: Path, root: Path, split: str | None, ds: DetectionSet) -> list[Path]:
    if path.is_file():
        return [path]
    folder = root / "Annotations" if (root / "Annotations").is_dir() else root
    listing = root / "ImageSets" / "Main" / f"{split}.txt"
    if split is None or not listing.is_file():
        ds.source = str(folder)
        return sorted(p for p in folder.glob("*.xml") if p.is_file())
    ds.source, ds.split = str(folder), f"{split} ({listing.relative_to(root)})"
    out = []
    for number, line in enumerate(listing.read_text(encoding="utf-8-sig", errors="replace").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        xml_file = folder / f"{fields[0]}.xml"
        if xml_file.is_file():
            out.append(xml_file)
        else:
            ds.bad_entries += 1
            ds.problems.append(f"{listing}:{number}: no annotation file {xml_file.name} in {folder}")
    return out


def parse_xml(data: bytes) -> tuple[ET.Element, dict[ET.Element, int]]:
    """The element tree of ``data`` and the line each element starts on (``expat.ExpatError`` if broken)."""
    builder = ET.TreeBuilder()
    lines: dict[ET.Element, int] = {}
    parser = expat.ParserCreate()
    parser.StartElementHandler = lambda tag, attrs: lines.__setitem__(
        builder.start(tag, attrs), parser.CurrentLineNumber
    )
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    parser.Parse(data, True)
    return builder.close(), lines


def _read(xml_file: Path, ds: DetectionSet):
    try:
        tree, lines = parse_xml(xml_file.read_bytes())
    except OSError as err:
        ds.bad_entries += 1
        ds.problems.append(f"{xml_file}: cannot read ({err.strerror or err})")
        return None
    except expat.ExpatError as err:
        ds.bad_entries += 1
        ds.problems.append(f"{xml_file}:{err.lineno}: not valid XML ({expat.ErrorString(err.code)})")
        return None
    if tree.tag != "annotation":
        ds.bad_entries += 1
        ds.problems.append(f"{xml_file}:1: not a VOC annotation (root element <{tree.tag}>, expected <annotation>)")
        return None
    return tree, lines


def _text(element: ET.Element, tag: str) -> str:
    found = element.find(tag)
    return (found.text or "").strip() if found is not None else ""


def _add_image(xml_file: Path, tree: ET.Element, lines: dict, wanted: str | None, dirs: list, build: Builder) -> None:
    ds = build.ds
    named = _text(tree, "filename")
    if named:
        candidates = [named] if Path(named).suffix else [named] + [named + s for s in SUFFIXES]
    else:
        candidates = [xml_file.stem + s for s in SUFFIXES]
    folders = [d if d is not None else xml_file.parent for d in dirs]
    image = next((f / c for c in candidates for f in folders if (f / c).is_file()), None)
    key = str(image) if image is not None else str(folders[0] / candidates[0])
    build.resolve = lambda name: image
    build.where = " or ".join(str(f) for f in folders)
    rec = build.image(key, f"{xml_file}:{lines.get(tree.find('filename'), 1)}", _size(tree))
    if rec is None:
        return
    for obj in tree.iter("object"):
        where = f"{xml_file}:{lines.get(obj, 1)}"
        name = _text(obj, "name")
        if wanted is not None and name != wanted:
            ds.other_category += 1
            continue
        difficult = _text(obj, "difficult") in ("1", "true", "True")
        if difficult:
            ds.difficult += 1
            if not ds.keep_ignore:
                continue
        bndbox = obj.find("bndbox")
        values = (
            parse_numbers([_text(bndbox, t) for t in BOX_TAGS], BOX_TAGS)
            if bndbox is not None
            else "object has no <bndbox>"
        )
        if isinstance(values, str):
            ds.bad_entries += 1
            ds.problems.append(f"{where}: object {name!r}: {values}")
            continue
        xmin, ymin, xmax, ymax = values
        build.add_box(key, rec, [xmin - 1, ymin - 1, xmax, ymax], where, ignore=difficult)


def _size(tree: ET.Element) -> tuple[int, int] | None:
    size = tree.find("size")
    if size is None:
        return None
    values = parse_numbers([_text(size, "width"), _text(size, "height")], ("width", "height"))
    if isinstance(values, str) or min(values) <= 0:  # missing, or 0 as some tools write: use the image
        return None
    return int(values[0]), int(values[1])


def _choose_name(path: Path, names: Counter, wanted: str | None) -> str | None:
    if wanted is not None:
        if wanted in names or not names:
            return wanted
        listed = ", ".join(f"{n} ({c})" for n, c in names.most_common(10))
        raise ValueError(f"{path}: no objects named {wanted!r}; names (objects): {listed}")
    if len(names) <= 1:
        return next(iter(names), None)
    faces = [n for n in names if n.lower() == "face"]
    if len(faces) == 1:
        return faces[0]
    listed = ", ".join(f"{n} ({c})" for n, c in names.most_common(10))
    raise ValueError(f"{path}: several object names ({listed}); choose one with --category")
