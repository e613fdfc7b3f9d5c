"""Build a servable Triton model repository from an export directory.

``build_repository(export_dir, out, target)`` copies the committed templates in the project's
``model_repository/`` (configs and python models of ``preprocess``, ``detector``, ``postprocess``
and the ``acfd`` ensemble) into ``out`` and adds the generated artefacts:

* every model's version folder gets a copy of the manifest, ``1/export.json`` (scales, thresholds,
  normalisation, tensor names are read from it at load time; nothing is typed twice);
* ``--target cpu``: ``detector/1/model.onnx`` and the python-backend detector (ONNX Runtime);
* ``--target tensorrt``: ``detector/1/model.plan`` and ``detector/config.pbtxt`` from
  ``config.tensorrt.pbtxt`` (``platform: "tensorrt_plan"``) with the engine's ``max_batch``; the
  ensemble's ``max_batch_size`` is lowered to match when the engine's is smaller.

Only the four model folders inside ``out`` are replaced; anything else there is left alone.
Problems a user can cause raise ``RepoError`` with one line naming the file and the problem.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "model_repository"
MODELS = ("preprocess", "detector", "postprocess", "acfd")
TARGETS = ("cpu", "tensorrt")
MANIFEST_FILE = "export.json"
TENSORRT_TEMPLATE = "config.tensorrt.pbtxt"
_MAX_BATCH = re.compile(r"^max_batch_size:\s*(\d+)\s*$", re.M)
_REQUIRED = ("onnx", "normalization", "test_scales", "postprocess")


class RepoError(ValueError):
    """A repository that cannot be built; the message names the file and the problem."""


def read_manifest(export_dir: str | Path) -> dict[str, Any]:
    """The export manifest ``export_dir/export.json``, checked for the keys serving reads."""
    path = Path(export_dir) / MANIFEST_FILE
    if not Path(export_dir).is_dir():
        raise RepoError(f"{export_dir}: export directory not found (make one with `acfd export`)")
    if not path.is_file():
        raise RepoError(f"{path}: no export manifest (is {export_dir} an `acfd export` output?)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RepoError(f"{path}: not a readable JSON manifest ({err})") from err
    if not isinstance(manifest, dict):
        raise RepoError(f"{path}: manifest is not a JSON object")
    missing = [key for key in _REQUIRED if key not in manifest]
    if missing:
        raise RepoError(f"{path}: manifest lacks {missing}")
    scales = manifest["test_scales"]
    if not (isinstance(scales, list) and len(scales) == 3 and all(len(s) == 2 for s in scales)):
        raise RepoError(f"{path}: test_scales must be three (height, width) pairs, got {scales!r}")
    return manifest


def build_repository(export_dir: str | Path, out: str | Path, target: str = "cpu", templates: Path = TEMPLATE_DIR) -> Path:
    """Write a complete model repository for ``export_dir`` into ``out``; returns ``out``."""
    if target not in TARGETS:
        raise RepoError(f"--target {target!r}: choose one of {list(TARGETS)}")
    export_dir, out = Path(export_dir), Path(out)
    manifest = read_manifest(export_dir)
    if not all((templates / model / "config.pbtxt").is_file() for model in MODELS):
        raise RepoError(f"{templates}: model repository templates not found (run from a checkout of the project)")
    if out.resolve() == templates.resolve():
        raise RepoError(f"--out {out}: that is the committed template folder; choose another folder")
    if out.exists() and not out.is_dir():
        raise RepoError(f"--out {out}: exists and is not a folder")

    if target == "cpu":
        artefact = export_dir / manifest["onnx"].get("file", "model.onnx")
        if not artefact.is_file():
            raise RepoError(f"{artefact}: the export has no ONNX model")
    else:
        trt = manifest.get("tensorrt")
        if not trt:
            raise RepoError(f"{export_dir / MANIFEST_FILE}: no TensorRT engine in this export (export with --tensorrt on a GPU host)")
        artefact = export_dir / trt.get("file", "model.plan")
        if not artefact.is_file():
            raise RepoError(f"{artefact}: the manifest names a TensorRT engine but the file is missing")

    out.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.onnx", "*.plan", MANIFEST_FILE, TENSORRT_TEMPLATE)
    for model in MODELS:
        shutil.rmtree(out / model, ignore_errors=True)
        shutil.copytree(templates / model, out / model, ignore=ignore)
        (out / model / "1").mkdir(exist_ok=True)
        shutil.copy2(export_dir / MANIFEST_FILE, out / model / "1" / MANIFEST_FILE)

    detector = out / "detector"
    if target == "cpu":
        shutil.copy2(artefact, detector / "1" / artefact.name)
    else:
        (detector / "1" / "model.py").unlink(missing_ok=True)
        engine_batch = int(manifest["tensorrt"].get("max_batch", 8))
        config = (templates / "detector" / TENSORRT_TEMPLATE).read_text()
        (detector / "config.pbtxt").write_text(_MAX_BATCH.sub(f"max_batch_size: {engine_batch}", config, count=1))
        shutil.copy2(artefact, detector / "1" / "model.plan")
    _limit_ensemble_batch(out)
    _publish_display_threshold(out, manifest)
    return out


def _publish_display_threshold(out: Path, manifest: dict) -> None:
    """The model's display threshold as the ensemble's config parameter ``display_threshold``, which
    clients read with the model config (``InputSpec.display_threshold``); absent in old manifests."""
    value = (manifest.get("postprocess") or {}).get("display_threshold")
    if value is None:
        return
    try:
        threshold = float(value)
    except (TypeError, ValueError):
        raise RepoError(f"export manifest: postprocess.display_threshold {value!r} is not a number") from None
    if not 0.0 <= threshold <= 1.0:
        raise RepoError(f"export manifest: postprocess.display_threshold {threshold} is outside [0, 1]")
    ensemble = out / "acfd" / "config.pbtxt"
    text = ensemble.read_text().rstrip("\n")
    ensemble.write_text(text + f'\nparameters {{ key: "display_threshold" value {{ string_value: "{threshold:g}" }} }}\n')


def max_batch_size(config_text: str) -> int:
    match = _MAX_BATCH.search(config_text)
    return int(match.group(1)) if match else 0


def _limit_ensemble_batch(out: Path) -> None:
    """Triton refuses an ensemble whose max_batch_size exceeds a member's: keep them in step."""
    ensemble = out / "acfd" / "config.pbtxt"
    text = ensemble.read_text()
    members = [max_batch_size((out / m / "config.pbtxt").read_text()) for m in MODELS if m != "acfd"]
    limit = min(members)
    if max_batch_size(text) > limit:
        ensemble.write_text(_MAX_BATCH.sub(f"max_batch_size: {limit}", text, count=1))
