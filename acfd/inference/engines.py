"""CPU engines that run an exported detector: uint8 pixels in, per-anchor scores and boxes out.

One call contract for every engine (the export contract of ``acfd.export.graph``):
``engine(pixels)`` with ``pixels`` uint8 RGB ``[B, H, W, 3]`` (the image resized to a test scale)
returns ``(scores [B, A], boxes [B, A, 4])`` float32, boxes in input pixels. The engines:

* ``onnxruntime``: ``model.onnx`` in ONNX Runtime, float32 (the reference);
* ``onnxruntime-int8``: ``model.int8.onnx`` (convolutions quantized, ``acfd export --int8``) in
  ONNX Runtime;
* ``openvino``: ``model.onnx`` in OpenVINO with bfloat16 inference where the CPU has bf16 units
  (AVX512-BF16, AMX), float32 otherwise (``note`` says so in one line);
* ``openvino-int8``: ``model.int8.onnx`` in OpenVINO, which runs the quantize/dequantize pairs as
  int8 convolutions (VNNI, AMX-INT8).

OpenVINO compiles a graph for each input shape it sees (``_OpenVINO``): a graph compiled for
static shapes runs about twice as fast here as one compiled for dynamic ones, and a server sees
only its three test scales. ``open_engine`` runs every engine once per test scale so that the first
caller does not pay for planning or compilation. Problems a user can cause raise ``EngineError``
with one line naming the file or the engine.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from acfd.cache import openvino_cache
from acfd.inference.manifest import ExportManifest

import numpy as np

ENGINES = ("onnxruntime", "onnxruntime-int8", "openvino", "openvino-int8")
# The fastest engine within 0.5 mAP points of float32 on the hold-out (benchmarks/RESULTS.md, issue 14),
# and the one used when an export has no int8 model.
DEFAULT_ENGINE = "openvino-int8"
FALLBACK_ENGINE = "openvino"
_MAX_COMPILED_SHAPES = 16  # OpenVINO graphs kept per engine (3 test scales x a few batch sizes)


class EngineError(RuntimeError):
    """An engine that cannot run; the message names the file or engine and the problem."""


def default_threads() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0))


def choose_engine(manifest: ExportManifest, engine: str | None = None) -> tuple[str, str]:
    """``(engine, note)``: ``engine`` itself when named, else ``DEFAULT_ENGINE``, or
    ``FALLBACK_ENGINE`` with a one-line note when the export has no int8 model."""
    if engine is not None:
        return engine, ""
    if DEFAULT_ENGINE.endswith("-int8") and not manifest.int8:
        return FALLBACK_ENGINE, (
            f"the export has no int8 model (acfd export writes one unless --no-int8); using engine {FALLBACK_ENGINE}"
        )
    return DEFAULT_ENGINE, ""


def model_file(manifest: ExportManifest, engine: str) -> str:
    """The file (in the export folder) that ``engine`` runs, from the manifest."""
    if engine not in ENGINES:
        raise EngineError(f"engine {engine!r}: choose one of {list(ENGINES)}")
    if engine.endswith("-int8"):
        int8 = manifest.int8
        if not int8:
            raise EngineError(f"engine {engine}: the export has no int8 model (export with `acfd export --int8`)")
        return str(int8["file"])
    return manifest.onnx.file


class Engine:
    """Base of the engines: ``name``, ``precision`` (``fp32``, ``bf16``, ``int8``), ``threads``,
    ``note`` (a line on a fallback, or empty) and ``__call__(pixels) -> (scores, boxes)``."""

    name = ""
    precision = ""
    threads = 0
    note = ""

    def __call__(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.name} ({self.precision}, {self.threads} threads)"


def check_pixels(pixels: np.ndarray) -> np.ndarray:
    """``pixels`` as a contiguous uint8 ``[B, H, W, 3]`` array, or ``EngineError`` saying what is wrong."""
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8:
        kind = pixels.dtype if isinstance(pixels, np.ndarray) else type(pixels).__name__
        raise EngineError(f"detector input must be uint8 pixels [B, H, W, 3], got {kind}")
    if pixels.ndim != 4 or pixels.shape[3] != 3 or 0 in pixels.shape:
        raise EngineError(f"detector input shape {list(pixels.shape)}: want [B, H, W, 3] with B, H, W > 0")
    return np.ascontiguousarray(pixels)


class _OnnxRuntime(Engine):
    def __init__(self, path: Path, name: str, threads: int, input_name: str, output_names: Sequence[str]):
        import onnxruntime as ort

        options = ort.SessionOptions()
        # One forward pass uses every thread for its operators; inter-op parallelism would only split
        # the same cores again (the graph is one chain of convolutions).
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as err:  # ONNX Runtime raises its own exception types
            raise EngineError(f"{path}: ONNX Runtime cannot load it ({type(err).__name__}: {err})") from err
        self.name, self.threads = name, threads
        self.precision = "int8" if name.endswith("-int8") else "fp32"
        self.input_name, self.output_names = input_name, list(output_names)

    def __call__(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores, boxes = self.session.run(self.output_names, {self.input_name: check_pixels(pixels)})
        return scores, boxes


def openvino_has_bf16() -> bool:
    """Whether OpenVINO's CPU plugin reports bf16 support on this CPU."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class _OpenVINO(Engine):
    def __init__(self, path: Path, name: str, threads: int, output_names: Sequence[str], precision: str = "auto"):
        try:
            import openvino as ov
        except ImportError as err:
            raise EngineError(f"engine {name}: OpenVINO is not installed (pip install openvino)") from err
        self.core = ov.Core()
        cache = openvino_cache()
        if cache is not None:  # a reopened engine loads its compiled graphs (acfd.cache)
            self.core.set_property({"CACHE_DIR": cache})
        try:
            self.model = self.core.read_model(str(path))
        except Exception as err:
            raise EngineError(f"{path}: OpenVINO cannot read it ({type(err).__name__}: {err})") from err
        self.name, self.threads, self.path = name, threads, path
        self.output_names = list(output_names)
        if name.endswith("-int8"):
            self.precision, hint = "int8", "f32"  # int8 where the graph says so, float32 around it
        elif precision == "auto":
            has_bf16 = openvino_has_bf16()
            self.precision = hint = "bf16" if has_bf16 else "f32"
            if not has_bf16:
                self.note = "engine openvino: this CPU has no bf16 support (AVX512-BF16 or AMX); running float32"
        else:
            self.precision = hint = precision
        self.config = {
            "INFERENCE_PRECISION_HINT": hint,
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
        }
        if self.precision == "f32":
            self.precision = "fp32"
        self.compiled: OrderedDict[tuple[int, ...], Any] = OrderedDict()

    def _request(self, shape: tuple[int, ...]):
        key = shape
        request = self.compiled.get(key)
        if request is not None:
            self.compiled.move_to_end(key)
            return request
        model = self.model.clone()
        model.reshape({model.input(0).get_any_name(): list(shape)})
        try:
            compiled = self.core.compile_model(model, "CPU", self.config)
        except Exception as err:
            raise EngineError(
                f"{self.path}: OpenVINO cannot compile it for {list(shape)} ({type(err).__name__}: {err})"
            ) from err
        outputs = [compiled.output(name) for name in self.output_names]
        request = (compiled.create_infer_request(), outputs)
        self.compiled[key] = request
        while len(self.compiled) > _MAX_COMPILED_SHAPES:
            self.compiled.popitem(last=False)
        return request

    def __call__(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pixels = check_pixels(pixels)
        request, outputs = self._request(tuple(pixels.shape))
        results = request.infer({0: pixels})
        # infer() returns views into the request's buffers, which the next call overwrites.
        scores, boxes = (np.array(results[output], copy=True) for output in outputs)
        return scores, boxes


def open_engine(
    folder: str | Path,
    manifest: ExportManifest,
    engine: str | None = None,
    threads: int = 0,
    warm_up: bool = True,
    precision: str = "auto",
) -> Engine:
    """The ``engine`` (``None``: ``choose_engine``'s) for the export (or model repository version)
    folder ``folder``, whose manifest is ``manifest``; ``threads=0`` uses every core this process may
    run on. ``precision`` ("auto", "bf16", "f32") applies to ``openvino`` only. ``warm_up`` runs it
    once at each test scale. A fallback the engine took is in its ``note``."""
    folder = Path(folder)
    engine, chosen_note = choose_engine(manifest, engine)
    path = folder / model_file(manifest, engine)
    if not path.is_file():
        raise EngineError(f"{path}: model file of engine {engine} is missing")
    if precision not in ("auto", "bf16", "f32"):
        raise EngineError(f"precision {precision!r}: choose auto, bf16 or f32")
    threads = int(threads) or default_threads()
    if engine.startswith("onnxruntime"):
        runner: Engine = _OnnxRuntime(path, engine, threads, manifest.onnx.input, manifest.onnx.outputs)
    else:
        runner = _OpenVINO(path, engine, threads, manifest.onnx.outputs, precision=precision)
    runner.note = "; ".join(note for note in (chosen_note, runner.note) if note)
    if warm_up:
        for height, width in manifest.test_scales:
            runner(np.zeros((1, int(height), int(width), 3), np.uint8))
    return runner
