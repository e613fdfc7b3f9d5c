"""Which annotation format a path holds: ``detect_format(path, forced) -> (format, path to load)``.

- A file: ``.json`` is COCO, ``.csv`` iCartoonFace CSV, ``.yaml``/``.yml`` a YOLO ``data.yaml``,
  ``.xml`` one Pascal VOC annotation; any other suffix is sniffed (``{`` COCO, ``<`` VOC, else CSV).
- A folder: every format it holds is a candidate:
  COCO/CSV: ``annotations.json``, else a single ``*.json``, else a single ``*.csv`` (as ``acfd synth``
  writes); YOLO: a ``data.yaml`` (or ``data.yml``, ``dataset.yaml``, or a single ``*.yaml``), else an
  ``images/`` and a ``labels/`` folder side by side; VOC: an ``Annotations/`` folder, else ``*.xml``
  files in the folder itself (it is the annotation folder).
  One candidate is used; none raises ``FileNotFoundError`` and several raise ``ValueError``, both
  naming the folder and what was found, so that ``--format`` can choose.
- ``forced`` (``coco``, ``csv``, ``yolo``, ``voc``) skips the guessing for that format; for a folder
  it still finds the file of that format in it.
"""

from __future__ import annotations

from pathlib import Path

FORMATS = ("coco", "csv", "yolo", "voc")
YAML_NAMES = ("data.yaml", "data.yml", "dataset.yaml")


def detect_format(path: Path, forced: str | None = None) -> tuple[str, Path]:
    if forced is not None and forced not in FORMATS:
        raise ValueError(f"{path}: unknown format {forced!r}; choose one of {', '.join(FORMATS)}")
    if path.is_file():
        return forced or _file_format(path), path
    found = _folder_candidates(path)
    if forced is not None:
        if forced not in found:
            raise FileNotFoundError(f"{path}: no {forced} annotations in this folder ({_looked_for(forced)})")
        return forced, found[forced]
    if not found:
        raise FileNotFoundError(
            f"{path}: no annotations found in this folder (looked for {'; '.join(_looked_for(f) for f in FORMATS)})"
        )
    kinds = {"coco" if k == "csv" else k for k in found}  # one COCO/CSV choice, as before
    if len(kinds) > 1:
        listed = ", ".join(f"{k} ({found[k].name})" for k in found)
        raise ValueError(f"{path}: holds annotations in several formats: {listed}; choose one with --format")
    kind = next(iter(found))
    return kind, found[kind]


def _file_format(path: Path) -> str:
    suffix = path.suffix.lower()
    known = {".json": "coco", ".csv": "csv", ".yaml": "yolo", ".yml": "yolo", ".xml": "voc"}
    if suffix in known:
        return known[suffix]
    with path.open("rb") as f:
        head = f.read(64).lstrip()
    return "coco" if head.startswith(b"{") else "voc" if head.startswith(b"<") else "csv"


def _folder_candidates(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    coco_or_csv = _coco_or_csv(folder)
    if coco_or_csv is not None:
        found[_file_format(coco_or_csv)] = coco_or_csv
    yamls = [folder / n for n in YAML_NAMES if (folder / n).is_file()]
    yamls = yamls or sorted(p for p in folder.glob("*.y*ml") if p.is_file() and p.suffix in (".yaml", ".yml"))
    if len(yamls) == 1 or (yamls and yamls[0].name in YAML_NAMES):
        found["yolo"] = yamls[0]
    elif len(yamls) > 1:
        raise ValueError(f"{folder}: several YAML files ({', '.join(p.name for p in yamls[:5])}); name one")
    elif (folder / "images").is_dir() and (folder / "labels").is_dir():
        found["yolo"] = folder
    if (folder / "Annotations").is_dir() or any(p.is_file() for p in folder.glob("*.xml")):
        found["voc"] = folder
    return found


def _coco_or_csv(folder: Path) -> Path | None:
    if (folder / "annotations.json").is_file():
        return folder / "annotations.json"
    for pattern in ("*.json", "*.csv"):
        files = sorted(p for p in folder.glob(pattern) if p.is_file())
        if len(files) == 1:
            return files[0]
        if len(files) > 1:
            raise ValueError(f"{folder}: several {pattern} files ({', '.join(p.name for p in files[:5])}); name one")
    return None


def _looked_for(kind: str) -> str:
    return {
        "coco": "annotations.json or a *.json",
        "csv": "a *.csv",
        "yolo": "data.yaml, or images/ beside labels/",
        "voc": "Annotations/ or *.xml",
    }[kind]
