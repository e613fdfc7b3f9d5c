"""int8 export: the convolutions of ``model.onnx`` quantized, calibrated on real or generated images.

``quantize_export(export_dir, images)`` writes ``export_dir/model.int8.onnx`` (``INT8_FILE``) with
ONNX Runtime's static quantization in QDQ form (QuantizeLinear / DequantizeLinear pairs around each
convolution; weights int8 per output channel, activations uint8 with ranges from the calibration
images) and records it in the manifest's ``int8`` entry. Only ``Conv`` nodes are quantized, and not
the head's output convolutions (``head_output_convs``): the scores, the box deltas and the in-graph
anchor and box decoding stay float32, where int8 would cost whole pixels. ONNX Runtime
and OpenVINO both run the QDQ graph as int8 convolutions (``acfd.inference.engines``).

Calibration input is what a served model sees: each image resized to every test scale with
``image_io.resize_rgb``, as uint8 pixels. ``images`` are uint8 RGB arrays (for example frames of
your own data, ``acfd export --calibration DIR``); without them, generated cartoon scenes are used.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from acfd.inference import image_io
from acfd.atomic_file import replaced_on_success
from acfd.inference.manifest import ExportManifest
from acfd.export.graph import INPUT_NAME, INT8_FILE, ExportError, read_manifest

DEFAULT_CALIBRATION_IMAGES = 32


def generated_images(count: int, seed: int = 0, size: tuple[int, int] = (640, 384)) -> list[np.ndarray]:
    """``count`` generated cartoon scenes (uint8 RGB ``[H, W, 3]``), scene ``i`` seeded with ``(seed, i)``."""
    from acfd.scenes.synth import generate_scene

    width, height = size
    return [generate_scene(np.random.default_rng((seed, i)), width, height)[0] for i in range(count)]


def folder_images(folder: str | Path, count: int) -> list[np.ndarray]:
    """Up to ``count`` images of ``folder`` (sorted by name, spread evenly over the folder)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ExportError(f"--calibration {folder}: no such folder")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in image_io.IMAGE_SUFFIXES)
    if not paths:
        raise ExportError(f"--calibration {folder}: no images ({', '.join(image_io.IMAGE_SUFFIXES)}) in the folder")
    picks = np.linspace(0, len(paths) - 1, num=min(count, len(paths))).round().astype(int)
    images = []
    for index in dict.fromkeys(picks.tolist()):
        try:
            images.append(image_io.read_image(paths[index]))
        except image_io.ImageError as err:
            raise ExportError(f"--calibration: {err}") from err
    return images


def calibration_batches(images: Sequence[np.ndarray], scales: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """Each image at each test scale, as the engine input ``[1, H, W, 3]`` uint8."""
    return [image_io.resize_rgb(image, int(h), int(w))[None] for image in images for h, w in scales]


def head_output_convs(path: str | Path) -> list[str]:
    """Names of the head's output convolutions (class logits, box deltas), which stay float32.

    Their outputs are the detector's answer: int8 there would round every score and box, and a
    quantize/dequantize pair between them and the box decoding makes OpenVINO's shape inference
    fail on static input shapes (OpenVINO 2026.4)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    names = [node.name for node in model.graph.node if node.op_type == "Conv"]
    outputs = [name for name in names if re.search(r"/head/(cls|reg)_branch/out(_\d+)?/Conv$", name)]
    if not outputs:
        raise ExportError(f"{path}: no head output convolutions found (is it an ACFD export?)")
    return outputs


def quantize_export(
    export_dir: str | Path,
    images: Sequence[np.ndarray] | None = None,
    source: str = "generated scenes",
    count: int = DEFAULT_CALIBRATION_IMAGES,
    seed: int = 0,
) -> ExportManifest:
    """Write ``export_dir/model.int8.onnx`` from ``model.onnx``; returns the updated manifest."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    export_dir = Path(export_dir)
    manifest = read_manifest(export_dir)
    if images is None:
        images = generated_images(count, seed)
    if not images:
        raise ExportError("int8 calibration needs at least one image")
    batches = calibration_batches(images, manifest.test_scales)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.pending = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.pending, None)
            return None if batch is None else {INPUT_NAME: batch}

    source_path = export_dir / manifest.onnx.file
    outputs = head_output_convs(source_path)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer's advice on graph pre-processing goes to the root logger
    try:
        with replaced_on_success(export_dir / INT8_FILE) as tmp:
            quantize_static(
                str(source_path), str(tmp), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
                per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                nodes_to_exclude=outputs,
            )  # fmt: skip
            model = onnx.load(str(tmp))
            # The quantizer leaves the calibration run's inferred shapes in value_info; they are those
            # of one input size and would mislead an engine that re-infers shapes for another.
            del model.graph.value_info[:]
            onnx.save(model, str(tmp))
    finally:
        root.setLevel(level)
    manifest = manifest.replace(int8={
        "file": INT8_FILE,
        "quantized_ops": ["Conv"],
        "float_nodes": outputs,
        "weights": "int8, symmetric, per output channel",
        "activations": "uint8, min-max ranges from calibration",
        "calibration": {"source": source, "images": len(images), "inputs": len(batches)},
    })  # fmt: skip
    manifest.write(export_dir)
    return manifest
