"""Export a trained detector: fused deploy graph to ONNX, checked, verified, described by a manifest.

Contract of the export directory (read by serving and the demo; keep it exactly):

* ``DIR/model.onnx``: the fused ``Predictor`` behind ``PixelPredictor``. Input ``images`` uint8
  ``[batch, height, width, 3]`` (all three dynamic): RGB pixels resized to the scale, cast,
  transposed and normalised as in ``acfd.inference.image_io`` inside the graph. Outputs ``scores``
  float32 ``[batch, A]`` (sigmoid face probability per anchor) and ``boxes`` float32 ``[batch, A, 4]``
  (x1, y1, x2, y2 in input pixels), ``A`` the anchor count at that height x width. Anchors are
  computed in-graph, so post-processing is only threshold, top-k and NMS.
* ``DIR/export.json``: the manifest (see ``build_manifest``): preset, normalisation, scales, strides,
  anchor counts, post-processing defaults, source checkpoint hash, opset, and the TensorRT build
  settings (or ``null``). Every value comes from the preset and ``acfd.inference.anchors``.
* ``DIR/model.int8.onnx``: the same graph with its convolutions quantized to int8 (static QDQ,
  calibrated on named or generated images), only when asked for (``acfd.export.quantize``).
* ``DIR/model.plan``: the TensorRT engine, only when asked for (``acfd.export.tensorrt_build``).

``FORMAT_VERSION`` is written into the manifest; readers refuse another version with one line.

Steps: load the checkpoint, copy and fuse the network (ACB branches and every BatchNorm folded
into plain convolutions), trace it with the TorchScript ONNX exporter (``dynamo=False``: the
torch.export-based exporter needs ``onnxscript``, which is not a project dependency, and the traced
graph already carries the dynamic H and W through its Shape/Range ops), run ``onnx.checker``, make
sure no training-only op survived, and run the graph once in ONNX Runtime at a shape other than the
traced one against the fused PyTorch model, so a shape baked in by tracing is caught here rather
than in serving. Files are written to a temporary name and renamed into place.

Errors the user can cause (bad checkpoint, bad option) raise ``ExportError`` with one line that
names the file or value and the problem.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import acfd
from acfd.atomic_file import replaced_on_success
from acfd.inference.manifest import (
    ExportManifest,
    ManifestError,
    OnnxGraph,
    PostprocessSettings,
)
from acfd.inference.anchors import anchor_count
from acfd.training.config import Preset
from acfd.inference import image_io

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
PLAN_FILE = "model.plan"
INPUT_NAME = "images"
OUTPUT_NAMES = ("scores", "boxes")
OUTPUT_MEANING = {
    "scores": "float32 [batch, anchors]: sigmoid face probability of each anchor",
    "boxes": "float32 [batch, anchors, 4]: decoded box (x1, y1, x2, y2) of each anchor in input pixels",
}
DYNAMIC_AXES = {
    INPUT_NAME: {0: "batch", 1: "height", 2: "width"},
    "scores": {0: "batch", 1: "anchors"},
    "boxes": {0: "batch", 1: "anchors"},
}
# Ops that only make sense while training; none may remain in a deploy graph.
TRAINING_ONLY_OPS = frozenset({"BatchNormalization", "Dropout"})
DEFAULT_OPSET = 17
MIN_OPSET = 11  # Resize with output sizes, Range
MAX_OPSET = 20  # the newest opset torch 2.13's TorchScript exporter writes

# Self-check (see verify_onnx): fixed floors and the allowed multiple of PyTorch's own float32 noise.
_VERIFY_SCORE_ATOL = 1e-4
_VERIFY_BOX_ATOL = 1e-2
_VERIFY_NOISE_FACTOR = 10.0
# The graph is traced at TRACE_SHAPE and checked at VERIFY_SHAPE: both small (tracing runs the
# network once), non-square, and different in batch, height and width, so that a size recorded as a
# constant by the tracer cannot go unnoticed. Neither is a multiple of the largest stride.
TRACE_SHAPE = (2, 288, 416, 3)  # NHWC, as the graph takes it
VERIFY_SHAPE = (1, 136, 264, 3)


class ExportError(ValueError):
    """An export that cannot be done; the message names the file or value and the problem."""


def export_model(
    weights: str | Path,
    out_dir: str | Path,
    opset: int = DEFAULT_OPSET,
    tensorrt: bool = False,
    fp16: bool = False,
    max_batch: int = 8,
    progress: bool = True,
    expect_preset: str | None = None,
    trt_profiles: str = "one",
    timing_cache: str | Path | None = None,
    workspace_mib: int = 4096,
    verify: bool = True,
) -> ExportManifest:
    """Export the checkpoint ``weights`` into ``out_dir``; returns the manifest (also in export.json).

    ``expect_preset`` makes a checkpoint of another preset an error. ``tensorrt`` also builds
    ``model.plan`` (``fp16``, ``max_batch``, ``trt_profiles``, ``timing_cache``, ``workspace_mib``
    are its settings; see ``acfd.export.tensorrt_build``).
    """
    from acfd.training.checkpoint import CheckpointError, load_model

    _check_options(opset, tensorrt, fp16, max_batch)
    weights = Path(weights)
    try:
        model, preset, _ = load_model(weights, expect_preset=expect_preset)
    except CheckpointError as err:
        raise ExportError(str(err)) from err
    checkpoint = {"path": str(weights.resolve()), "sha256": file_sha256(weights)}
    return export_model_from_module(
        model,
        preset,
        out_dir,
        opset=opset,
        tensorrt=tensorrt,
        fp16=fp16,
        max_batch=max_batch,
        progress=progress,
        checkpoint=checkpoint,
        trt_profiles=trt_profiles,
        timing_cache=timing_cache,
        workspace_mib=workspace_mib,
        verify=verify,
    )


def export_model_from_module(
    model: nn.Module,
    preset: Preset,
    out_dir: str | Path,
    opset: int = DEFAULT_OPSET,
    tensorrt: bool = False,
    fp16: bool = False,
    max_batch: int = 8,
    progress: bool = True,
    checkpoint: dict[str, str | None] | None = None,
    trt_profiles: str = "one",
    timing_cache: str | Path | None = None,
    workspace_mib: int = 4096,
    verify: bool = True,
) -> ExportManifest:
    """Export an in-memory ``ACFD`` network (train or deploy form; it is copied, not changed)."""
    from acfd.training.model import PixelPredictor, Predictor

    _check_options(opset, tensorrt, fp16, max_batch)
    trt_build = None
    if tensorrt:  # fail before the slow part when TensorRT, its GPU or a setting is missing
        from acfd.export import tensorrt_build as trt_build

        profiles = trt_build.optimization_profiles(preset.inference, max_batch, mode=trt_profiles)
        trt_build.check_available()
    out_dir = Path(out_dir)
    with _progress(total=4 + int(verify) + int(tensorrt), enabled=progress) as step:
        step("fuse")
        predictor = PixelPredictor(Predictor(fuse_copy(model))).eval()
        step("onnx")
        _make_dir(out_dir)
        onnx_path = out_dir / ONNX_FILE
        with _replaced_on_success(onnx_path) as tmp:
            trace_onnx(predictor, tmp, opset, example_shape=TRACE_SHAPE)
            step("check")
            check_onnx(tmp, name=onnx_path)
            if verify:
                step("verify")
                verify_onnx(tmp, predictor, preset, shape=VERIFY_SHAPE, name=onnx_path)
        for stale in (PLAN_FILE, INT8_FILE):  # artefacts of an earlier export no longer match
            (out_dir / stale).unlink(missing_ok=True)
        step("manifest")
        manifest = build_manifest(preset, opset, checkpoint)
        manifest.write(out_dir)  # usable as an ONNX-only export even if the engine fails
        if trt_build is not None:
            step("tensorrt")
            manifest = manifest.replace(tensorrt=trt_build.build_engine(
                onnx_path, out_dir / PLAN_FILE, profiles, fp16=fp16, max_batch=max_batch,
                timing_cache=timing_cache, workspace_mib=workspace_mib,
            ))  # fmt: skip
            manifest.write(out_dir)
    return manifest


def fuse_copy(model: nn.Module) -> nn.Module:
    """A deploy-form copy of ``model`` in eval mode; ``ExportError`` if a BatchNorm survives fusion."""
    fused = copy.deepcopy(model).eval()
    fused.fuse()
    fused.eval()
    left = [name for name, m in fused.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if left:
        raise ExportError(f"fusion left {len(left)} BatchNorm layer(s) in the network (first: {left[0]})")
    return fused


def trace_onnx(predictor: nn.Module, path: Path, opset: int, example_shape: tuple[int, int, int, int]) -> None:
    """Write ``predictor`` to ``path`` as ONNX with dynamic batch, height and width.

    Trace with a batch above 1 (``TRACE_SHAPE``) so that no batch-1 shortcut is recorded. The
    exporter's deprecation and tracer warnings are silenced: ``verify_onnx`` runs the graph at
    another shape, which is what those warnings are about.
    """
    example = torch.zeros(example_shape, dtype=torch.uint8)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            predictor,
            (example,),
            str(path),
            dynamo=False,
            export_params=True,
            opset_version=opset,
            do_constant_folding=True,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=DYNAMIC_AXES,
        )


def check_onnx(path: str | Path, name: str | Path | None = None) -> None:
    """``onnx.checker`` (with shape inference), the I/O names and dynamic axes, no training-only ops.

    ``name`` is the file named in errors (the final name when ``path`` is a temporary file).
    """
    import onnx

    path = Path(path)
    name = name or path
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else "invalid model"
        raise ExportError(f"{name}: onnx.checker rejects the exported graph ({first})") from err
    model = onnx.load(str(path))
    inputs = [i.name for i in model.graph.input]
    outputs = [o.name for o in model.graph.output]
    if inputs != [INPUT_NAME] or outputs != list(OUTPUT_NAMES):
        raise ExportError(
            f"{name}: graph has inputs {inputs} and outputs {outputs}, want [{INPUT_NAME!r}] and {list(OUTPUT_NAMES)}"
        )
    tensor_type = model.graph.input[0].type.tensor_type
    if tensor_type.elem_type != onnx.TensorProto.UINT8:
        raise ExportError(
            f"{name}: input {INPUT_NAME!r} is {onnx.TensorProto.DataType.Name(tensor_type.elem_type)}, "
            "want UINT8 pixels"
        )
    dims = tensor_type.shape.dim
    fixed = [i for i in (0, 1, 2) if len(dims) == 4 and not dims[i].dim_param]
    if len(dims) != 4 or fixed or dims[3].dim_value != 3:
        raise ExportError(
            f"{name}: input {INPUT_NAME!r} must be [batch, height, width, 3] with the first three dynamic"
        )
    found = sorted(TRAINING_ONLY_OPS & set(graph_op_types(model)))
    if found:
        raise ExportError(f"{name}: training-only ops remain in the deploy graph: {found}")


def graph_op_types(model) -> list[str]:
    """Op type of every node of an ``onnx.ModelProto``, subgraphs (If/Loop bodies) included."""
    import onnx

    types: list[str] = []
    pending = [model.graph]
    while pending:
        graph = pending.pop()
        for node in graph.node:
            types.append(node.op_type)
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    pending.append(attr.g)
                pending.extend(attr.graphs)
    return types


def onnx_session(path: str | Path, threads: int = 0):
    """A CPU ONNX Runtime session for ``path`` (``threads=0``: ONNX Runtime's default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def verify_onnx(
    path: Path, predictor: nn.Module, preset: Preset, shape: tuple[int, int, int, int], name: str | Path | None = None
) -> None:
    """Run the ONNX graph at ``shape`` (NHWC, not the traced one) against the fused PyTorch predictor.

    ``predictor`` is the traced module (uint8 pixels in). Checks the anchor count against
    ``acfd.inference.anchors``, then the outputs. The reference is the network in float64 on the
    float64-normalised pixels; the graph may differ from it by ``_VERIFY_NOISE_FACTOR`` times what
    PyTorch's own float32 run differs by (or the fixed floor, whichever is larger). An untrained
    network can have huge activations and boxes of 10^5 pixels, where float32 noise alone is far
    above any fixed tolerance; a shape baked in by tracing gives errors far above that noise.
    """
    name = name or path
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8)
    mean = torch.tensor(image_io.PIXEL_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(image_io.PIXEL_STD, dtype=torch.float64).view(1, 3, 1, 1)
    normalised = (pixels.permute(0, 3, 1, 2).double() - mean) / std
    network = getattr(predictor, "predictor", predictor)  # PixelPredictor wraps the float network
    with torch.no_grad():
        ref32 = [t.numpy() for t in predictor(pixels)]
        ref64 = [t.numpy() for t in copy.deepcopy(network).double()(normalised)]
    scores, boxes = onnx_session(path).run(list(OUTPUT_NAMES), {INPUT_NAME: pixels.numpy()})
    want = anchor_count(shape[1], shape[2], preset.model.strides)
    if scores.shape != (shape[0], want) or boxes.shape != (shape[0], want, 4):
        raise ExportError(
            f"{name}: at input {list(shape)} the graph gives scores {list(scores.shape)} and boxes "
            f"{list(boxes.shape)}, want [{shape[0]}, {want}] and [{shape[0]}, {want}, 4]"
        )
    for label, got, torch32, ref, floor in (
        ("score", scores, ref32[0], ref64[0], _VERIFY_SCORE_ATOL),
        ("box", boxes, ref32[1], ref64[1], _VERIFY_BOX_ATOL),
    ):
        finite = np.isfinite(ref)
        err = float(np.abs(got[finite] - ref[finite]).max(initial=0.0))
        noise = float(np.abs(torch32[finite] - ref[finite]).max(initial=0.0))
        if not np.isfinite(got[finite]).all() or err > max(floor, _VERIFY_NOISE_FACTOR * noise):
            raise ExportError(
                f"{name}: ONNX Runtime disagrees with PyTorch at input {list(shape)} "
                f"(max {label} error {err:.3g}, PyTorch float32 noise {noise:.3g})"
            )


def build_manifest(
    preset: Preset,
    opset: int,
    checkpoint: dict[str, str | None] | None = None,
    tensorrt: dict[str, Any] | None = None,
) -> ExportManifest:
    """The ``export.json`` contents; every value derives from ``preset`` and the anchor layout."""
    inference = preset.inference
    strides = tuple(preset.model.strides)
    shapes = list(inference.test_scales) + [inference.single_scale]
    return ExportManifest(
        acfd_version=acfd.__version__,
        preset=preset.name,
        preset_config=preset.to_dict(),
        checkpoint=dict(checkpoint) if checkpoint else {"path": None, "sha256": None},
        onnx=OnnxGraph(
            file=ONNX_FILE,
            opset=int(opset),
            input=INPUT_NAME,
            input_dtype="uint8",
            input_layout="NHWC",
            outputs=tuple(OUTPUT_NAMES),
            output_meaning=dict(OUTPUT_MEANING),
        ),  # fmt: skip
        normalization={
            "channel_order": image_io.CHANNEL_ORDER,
            "mean": list(image_io.PIXEL_MEAN),
            "std": list(image_io.PIXEL_STD),
            "pixel_range": [0, 255],
        },
        single_scale=tuple(inference.single_scale),
        test_scales=tuple(tuple(s) for s in inference.test_scales),
        strides=strides,
        anchors_per_scale={f"{h}x{w}": anchor_count(h, w, strides) for h, w in shapes},
        postprocess=PostprocessSettings(
            score_threshold=inference.score_threshold,
            pre_nms_topk=inference.pre_nms_topk,
            nms_iou=inference.nms_iou,
            max_detections=inference.max_detections,
            display_threshold=inference.display_threshold,  # what clients show by default
        ),
        tensorrt=tensorrt,
    )


def read_manifest(export_dir: str | Path) -> ExportManifest:
    """The manifest of an export directory; ``ExportError`` names the file when it is unusable."""
    try:
        return ExportManifest.read(export_dir)
    except ManifestError as err:
        raise ExportError(str(err)) from err


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_options(opset: int, tensorrt: bool, fp16: bool, max_batch: int) -> None:
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(f"opset {opset} is not supported: choose {MIN_OPSET} to {MAX_OPSET}")
    if fp16 and not tensorrt:
        raise ExportError("fp16 applies to the TensorRT engine only: ask for tensorrt as well (--tensorrt --fp16)")
    if max_batch < 1:
        raise ExportError(f"max batch {max_batch} must be at least 1")


def _make_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ExportError(f"{path}: cannot create the output folder ({err.strerror or err})") from err


@contextmanager
def _replaced_on_success(target: Path) -> Iterator[Path]:
    """``acfd.atomic_file.replaced_on_success``, with ``ExportError`` when its temporary file cannot be made."""
    with contextlib.ExitStack() as stack:
        try:
            tmp = stack.enter_context(replaced_on_success(target))
        except OSError as err:
            raise ExportError(f"{target.parent}: cannot write there ({err.strerror or err})") from err
        yield tmp


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Callable[[str], None]]:
    """tqdm bar on stderr; the yielded ``step(name)`` ends the previous step and starts ``name``."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc="export", unit="step", disable=not enabled, file=sys.stderr)
    started = []

    def step(name: str) -> None:
        if started:
            bar.update(1)
        started.append(name)
        bar.set_postfix_str(name)

    try:
        yield step
        bar.update(total - bar.n)
    finally:
        bar.close()
