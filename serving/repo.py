"""Build a servable Triton model repository from an export directory.

``build_repository(export_dir, out, target)`` copies the committed templates in the project's
``model_repository/`` (configs and python models of ``preprocess``, ``detector``, ``postprocess``
and the ``acfd`` ensemble; installed as the package data ``acfd.model_repository``, found with
``importlib.resources``, so a wheel install has them too) into ``out`` and adds the generated
artefacts:

* every model's version folder gets a copy of the manifest, ``1/export.json`` (scales, thresholds,
  normalisation, tensor names are read from it at load time; nothing is typed twice);
* ``--target cpu``: the python-backend detector with the model file of its CPU engine
  (``--engine``, ``acfd.inference.engines``: ``detector/1/model.onnx``, or ``model.int8.onnx``
  for the int8 engines), the engine and its thread count written as the detector's config
  parameters ``engine`` and ``threads``;
* ``--target tensorrt``: ``detector/1/model.plan`` and ``detector/config.pbtxt`` from
  ``config.tensorrt.pbtxt`` (``platform: "tensorrt_plan"``) with the engine's ``max_batch``; the
  ensemble's ``max_batch_size`` is lowered to match when the engine's is smaller.

Instance counts of the member models are the templates' (chosen for a 2-core box, see their
``config.pbtxt``) unless ``instances`` overrides them. Only the four model folders inside ``out``
are replaced; anything else there is left alone.
Problems a user can cause raise ``RepoError`` with one line naming the file and the problem.
"""

from __future__ import annotations

import re
import shutil
from importlib import resources
from pathlib import Path

from acfd.inference.manifest import MANIFEST_FILE, ExportManifest, ManifestError
from acfd.inference.engines import ENGINES, EngineError, choose_engine, model_file


def _template_dir() -> Path:
    """The installed templates (package ``acfd.model_repository``: the checkout's folder in an
    editable install, site-packages in a wheel install)."""
    try:
        return Path(str(resources.files("acfd.model_repository")))
    except ModuleNotFoundError:  # an install from before the templates were package data
        return Path(__file__).resolve().parent.parent / "model_repository"


TEMPLATE_DIR = _template_dir()
MODELS = ("preprocess", "detector", "postprocess", "acfd")
TARGETS = ("cpu", "tensorrt")
TENSORRT_TEMPLATE = "config.tensorrt.pbtxt"
_MAX_BATCH = re.compile(r"^max_batch_size:\s*(\d+)\s*$", re.M)
_INSTANCE_COUNT = re.compile(r"(instance_group\s*\[\s*\{[^}]*?count:\s*)(\d+)", re.S)


class RepoError(ValueError):
    """A repository that cannot be built; the message names the file and the problem."""


def read_manifest(export_dir: str | Path) -> ExportManifest:
    """The export manifest ``export_dir/export.json``, checked for what serving reads."""
    path = Path(export_dir) / MANIFEST_FILE
    if not Path(export_dir).is_dir():
        raise RepoError(f"{export_dir}: export directory not found (make one with `acfd export`)")
    try:
        manifest = ExportManifest.read(export_dir)
    except ManifestError as err:
        raise RepoError(str(err)) from err
    if len(manifest.test_scales) != 3:  # the ensemble has one detector step per scale
        raise RepoError(
            f"{path}: test_scales must be three (height, width) pairs, got {[list(s) for s in manifest.test_scales]}"
        )
    return manifest


def parse_instances(text: str | None) -> dict[str, int]:
    """``"preprocess=2,detector=1"`` -> ``{"preprocess": 2, "detector": 1}``; ``RepoError`` names a bad entry."""
    counts: dict[str, int] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in MODELS[:3]:
            raise RepoError(f"--instances {item!r}: model must be one of {list(MODELS[:3])}")
        try:
            count = int(value)
        except ValueError:
            count = 0
        if count < 1:
            raise RepoError(f"--instances {item!r}: want MODEL=N with N >= 1")
        counts[name] = count
    return counts


def build_repository(
    export_dir: str | Path,
    out: str | Path,
    target: str = "cpu",
    templates: Path = TEMPLATE_DIR,
    engine: str | None = None,
    threads: int = 0,
    instances: dict[str, int] | None = None,
    notes: list[str] | None = None,
) -> Path:
    """Write a complete model repository for ``export_dir`` into ``out``; returns ``out``.

    ``engine`` (``None``: the default for the export, ``choose_engine``) and ``threads`` (0: every
    core the server may use) set the CPU detector; ``instances`` maps member model names to instance
    counts. A fallback taken is appended to ``notes`` as one line."""
    if target not in TARGETS:
        raise RepoError(f"--target {target!r}: choose one of {list(TARGETS)}")
    if engine is not None and engine not in ENGINES:
        raise RepoError(f"--engine {engine!r}: choose one of {list(ENGINES)}")
    if threads < 0:
        raise RepoError(f"--threads {threads}: want 0 (every core) or more")
    export_dir, out = Path(export_dir), Path(out)
    manifest = read_manifest(export_dir)
    if not all((templates / model / "config.pbtxt").is_file() for model in MODELS):
        raise RepoError(
            f"{templates}: model repository templates not found "
            "(reinstall acfd: they ship as its package data acfd.model_repository)"
        )
    if out.resolve() == templates.resolve():
        raise RepoError(f"--out {out}: that is the committed template folder; choose another folder")
    if out.exists() and not out.is_dir():
        raise RepoError(f"--out {out}: exists and is not a folder")

    if target == "cpu":
        engine, note = choose_engine(manifest, engine)
        if note and notes is not None:
            notes.append(note)
        try:
            artefact = export_dir / model_file(manifest, engine)
        except EngineError as err:
            raise RepoError(f"{export_dir}: {err}") from err
        if not artefact.is_file():
            raise RepoError(f"{artefact}: the export has no model file for engine {engine}")
    else:
        trt = manifest.tensorrt
        if not trt:
            raise RepoError(
                f"{export_dir / MANIFEST_FILE}: no TensorRT engine in this export "
                "(export with --tensorrt on a GPU host)"
            )
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
        config = detector / "config.pbtxt"
        text = _set_parameter(config.read_text(), "engine", engine)
        config.write_text(_set_parameter(text, "threads", str(int(threads))))
    else:
        (detector / "1" / "model.py").unlink(missing_ok=True)
        engine_batch = int(manifest.tensorrt.get("max_batch", 8))
        config = (templates / "detector" / TENSORRT_TEMPLATE).read_text()
        (detector / "config.pbtxt").write_text(_MAX_BATCH.sub(f"max_batch_size: {engine_batch}", config, count=1))
        shutil.copy2(artefact, detector / "1" / "model.plan")
    for model, count in (instances or {}).items():
        config = out / model / "config.pbtxt"
        text, replaced = _INSTANCE_COUNT.subn(lambda m: f"{m.group(1)}{count}", config.read_text(), count=1)
        if not replaced:
            raise RepoError(f"{config}: no instance_group count to set for --instances {model}={count}")
        config.write_text(text)
    _limit_ensemble_batch(out)
    _publish_display_threshold(out, manifest)
    return out


def _parameter_pattern(key: str) -> re.Pattern:
    """A config.pbtxt parameter ``key``: groups (prefix up to the value's quote, value, closing quote)."""
    return re.compile(r'(key:\s*"' + re.escape(key) + r'"\s*value:\s*\{\s*string_value:\s*")([^"]*)(")')


def config_parameter(config_text: str, key: str) -> str | None:
    """The string value of parameter ``key`` in a config.pbtxt text, or None when it has none."""
    match = _parameter_pattern(key).search(config_text)
    return match.group(2) if match else None


def _set_parameter(config_text: str, key: str, value: str) -> str:
    """``config_text`` with the string value of parameter ``key`` replaced (it must be there)."""
    text, count = _parameter_pattern(key).subn(lambda m: m.group(1) + value + m.group(3), config_text, count=1)
    if not count:
        raise RepoError(f"detector config template has no parameter {key!r}")
    return text


def _publish_display_threshold(out: Path, manifest: ExportManifest) -> None:
    """The model's display threshold as the ensemble's config parameter ``display_threshold``, which
    clients read with the model config (``InputSpec.display_threshold``); the manifest has checked it."""
    threshold = manifest.postprocess.display_threshold
    ensemble = out / "acfd" / "config.pbtxt"
    text = ensemble.read_text().rstrip("\n")
    ensemble.write_text(
        text + f'\nparameters {{ key: "display_threshold" value {{ string_value: "{threshold:g}" }} }}\n'
    )


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
