"""The export manifest (``export.json``): one typed, versioned contract, read and written here only.

The manifest is the contract between export, ``acfd repo``, the served models, the engines, the
clients and the ``Detector`` API. ``ExportManifest.read(folder)`` / ``.write(folder)`` are its one
reader and writer (no torch import: the served python models use them), and ``from_dict``
validates every field: a manifest of another ``format_version``, or with a field missing or of the
wrong type, fails with one line naming the file and the field (``ManifestError``).

``FORMAT_VERSION`` 2: the graph takes uint8 NHWC pixels and normalises them itself (format 1 took
float32 NCHW normalised input; such exports must be made again).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT_VERSION = 2
MANIFEST_FILE = "export.json"


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class OnnxGraph:
    """The exported graph: its file, opset and tensor names (see ``acfd.export.graph``)."""

    file: str
    opset: int
    input: str
    input_dtype: str
    input_layout: str
    outputs: tuple[str, ...]
    output_meaning: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PostprocessSettings:
    """Paper section 4.1's post-processing thresholds, and the score clients show by default."""

    score_threshold: float
    pre_nms_topk: int
    nms_iou: float
    max_detections: int
    display_threshold: float = 0.5


@dataclass(frozen=True)
class ExportManifest:
    preset: str
    preset_config: dict[str, Any]
    onnx: OnnxGraph
    normalization: dict[str, Any]
    single_scale: tuple[int, int]
    test_scales: tuple[tuple[int, int], ...]
    strides: tuple[int, ...]
    anchors_per_scale: dict[str, int]
    postprocess: PostprocessSettings
    checkpoint: dict[str, Any] = field(default_factory=lambda: {"path": None, "sha256": None})
    int8: dict[str, Any] | None = None  # file, quantized_ops, float_nodes, calibration (acfd.export.quantize)
    tensorrt: dict[str, Any] | None = None  # file, fp16, max_batch, profiles (acfd.export.tensorrt_build)
    acfd_version: str = ""
    format_version: int = FORMAT_VERSION

    # ---- reading and writing ------------------------------------------------------------------
    @classmethod
    def read(cls, folder: str | Path) -> ExportManifest:
        """The manifest ``folder/export.json``."""
        path = Path(folder) / MANIFEST_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ManifestError(f"{path}: no export manifest (is {folder} an `acfd export` output?)") from None
        except (OSError, UnicodeDecodeError) as err:
            raise ManifestError(
                f"{path}: cannot read the export manifest ({getattr(err, 'strerror', None) or err})"
            ) from err
        except json.JSONDecodeError as err:
            raise ManifestError(f"{path}: export manifest is not valid JSON ({err})") from err
        return cls.from_dict(data, source=path)

    def write(self, folder: str | Path) -> Path:
        """Write ``folder/export.json`` atomically; returns its path."""
        from acfd.atomic_file import replaced_on_success

        path = Path(folder) / MANIFEST_FILE
        with replaced_on_success(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["onnx"]["outputs"] = list(self.onnx.outputs)
        data["single_scale"] = list(self.single_scale)
        data["test_scales"] = [list(s) for s in self.test_scales]
        data["strides"] = list(self.strides)
        return data

    def replace(self, **changes: Any) -> ExportManifest:
        return dataclasses.replace(self, **changes)

    # ---- validation ---------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, source: str | Path = MANIFEST_FILE) -> ExportManifest:
        """Validate ``data`` (the parsed JSON) field by field; ``ManifestError`` names the first bad one."""
        check = _Checker(source)
        if not isinstance(data, dict):
            raise ManifestError(f"{source}: export manifest is not a JSON object")
        version = data.get("format_version", 1)
        if version != FORMAT_VERSION:
            raise ManifestError(
                f"{source}: export format {version}, this acfd reads format {FORMAT_VERSION} "
                f"(uint8 pixel input); export the checkpoint again with `acfd export`"
            )
        onnx = check.mapping(data, "onnx")
        post = check.mapping(data, "postprocess")
        return cls(
            preset=check.typed(data, "preset", str),
            preset_config=check.mapping(data, "preset_config"),
            onnx=OnnxGraph(
                file=check.typed(onnx, "onnx.file", str),
                opset=check.typed(onnx, "onnx.opset", int),
                input=check.typed(onnx, "onnx.input", str),
                input_dtype=check.choice(onnx, "onnx.input_dtype", ("uint8",)),
                input_layout=check.choice(onnx, "onnx.input_layout", ("NHWC",)),
                outputs=tuple(check.strings(onnx, "onnx.outputs", length=2)),
                output_meaning=dict(onnx.get("output_meaning") or {}),
            ),
            normalization=check.mapping(data, "normalization"),
            single_scale=check.pair(data, "single_scale"),
            test_scales=check.pairs(data, "test_scales"),
            strides=tuple(check.ints(data, "strides")),
            anchors_per_scale={str(k): int(v) for k, v in check.mapping(data, "anchors_per_scale").items()},
            postprocess=PostprocessSettings(
                score_threshold=check.fraction(post, "postprocess.score_threshold"),
                pre_nms_topk=check.positive(post, "postprocess.pre_nms_topk"),
                nms_iou=check.fraction(post, "postprocess.nms_iou"),
                max_detections=check.positive(post, "postprocess.max_detections"),
                display_threshold=check.fraction(post, "postprocess.display_threshold", default=0.5),
            ),
            checkpoint=dict(data.get("checkpoint") or {"path": None, "sha256": None}),
            int8=check.optional_file_entry(data, "int8"),
            tensorrt=check.optional_file_entry(data, "tensorrt"),
            acfd_version=str(data.get("acfd_version", "")),
            format_version=FORMAT_VERSION,
        )


class _Checker:
    """Field checks that raise ``ManifestError("<source>: <field>: <what>")``."""

    _MISSING = object()

    def __init__(self, source: str | Path):
        self.source = source

    def fail(self, name: str, what: str) -> ManifestError:
        return ManifestError(f"{self.source}: {name}: {what}")

    def get(self, data: dict, name: str, default: Any = _MISSING) -> Any:
        key = name.rsplit(".", 1)[-1]
        if key not in data:
            if default is not self._MISSING:
                return default
            raise self.fail(name, "missing")
        return data[key]

    def typed(self, data: dict, name: str, kind: type) -> Any:
        value = self.get(data, name)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(name, f"expected {kind.__name__}, got {value!r}")
        return value

    def mapping(self, data: dict, name: str) -> dict:
        return self.typed(data, name, dict)

    def choice(self, data: dict, name: str, allowed: tuple[str, ...]) -> str:
        value = self.get(data, name)
        if value not in allowed:
            raise self.fail(name, f"expected one of {list(allowed)}, got {value!r}")
        return value

    def strings(self, data: dict, name: str, length: int) -> list[str]:
        value = self.get(data, name)
        if not (isinstance(value, list) and len(value) == length and all(isinstance(v, str) for v in value)):
            raise self.fail(name, f"expected {length} names, got {value!r}")
        return value

    def ints(self, data: dict, name: str) -> list[int]:
        value = self.get(data, name)
        if not (
            isinstance(value, list)
            and value
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
        ):
            raise self.fail(name, f"expected a list of positive integers, got {value!r}")
        return value

    def pair(self, data: dict, name: str) -> tuple[int, int]:
        return self._pair_at(self.get(data, name), name)

    def pairs(self, data: dict, name: str) -> tuple[tuple[int, int], ...]:
        value = self.get(data, name)
        if not (isinstance(value, list) and value):
            raise self.fail(name, f"expected a list of (height, width) pairs, got {value!r}")
        return tuple(self._pair_at(item, f"{name}[{i}]") for i, item in enumerate(value))

    def _pair_at(self, item: Any, name: str) -> tuple[int, int]:
        ok = (
            isinstance(item, list)
            and len(item) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in item)
        )
        if not ok:
            raise self.fail(name, f"expected a (height, width) pair of positive integers, got {item!r}")
        return int(item[0]), int(item[1])

    def fraction(self, data: dict, name: str, default: Any = _MISSING) -> float:
        value = self.get(data, name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise self.fail(name, f"expected a number in [0, 1], got {value!r}")
        return float(value)

    def positive(self, data: dict, name: str) -> int:
        value = self.get(data, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.fail(name, f"expected a positive integer, got {value!r}")
        return value

    def optional_file_entry(self, data: dict, name: str) -> dict | None:
        value = data.get(name)
        if value is None:
            return None
        if not (isinstance(value, dict) and isinstance(value.get("file"), str)):
            raise self.fail(name, f"expected null or an object naming its file, got {value!r}")
        return dict(value)


def read_manifest(folder: str | Path) -> ExportManifest:
    """``ExportManifest.read(folder)``."""
    return ExportManifest.read(folder)
