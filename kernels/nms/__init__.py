"""Non-maximum suppression, one algorithm in two array modules (NumPy on CPUs, CuPy on GPUs).

``nms(boxes, scores, iou_threshold, xp=None, max_keep=None)`` returns the kept indices (int64,
descending score; equal scores keep the lower index first) after greedy suppression of every box
whose IoU with a kept box is strictly above the threshold; with ``max_keep`` it stops once that many
are kept (the same indices as the full run's first ``max_keep``). ``xp`` is the ``numpy`` or ``cupy`` module; ``None``
takes the module of ``boxes``. The exact arithmetic is specified in :mod:`.numpy_nms`.

``array_module(prefer_gpu=True)`` returns ``cupy`` only when it imports *and* a GPU really works
(CuPy installs and imports on machines without one, then fails at the first allocation), else
``numpy``. Evaluation and the serving postprocess model both call these two functions.
"""

from __future__ import annotations

import functools
from types import ModuleType

import numpy as np

from acfd.kernels.nms.cupy_nms import nms_cupy
from acfd.kernels.nms.numpy_nms import iou_matrix, nms_numpy, sort_by_score

__all__ = ["array_module", "cupy_usable", "module_of", "nms", "nms_cupy", "nms_numpy", "iou_matrix", "sort_by_score"]


@functools.lru_cache(maxsize=1)
def cupy_usable() -> str | None:
    """``None`` when CuPy can run on a GPU here, else a one-line reason why not (cached)."""
    try:
        import cupy
    except Exception as err:  # ImportError, or a broken CUDA library underneath
        return f"CuPy is not importable ({type(err).__name__}: {err})"
    from acfd.kernels.nms.nvrtc import preload_nvrtc

    # CuPy 13.6 does not find the NVRTC of the pip wheel by itself: without a CUDA toolkit the
    # first kernel compile (the NMS warm-up) would fail. A missing NVRTC shows up at that compile.
    preload_nvrtc()
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "CuPy sees no CUDA GPU"
        probe = cupy.arange(4, dtype=cupy.float32)
        if float((probe * 2).sum().get()) != 12.0:
            return "CuPy computed a wrong result on the GPU"
    except Exception as err:  # CUDARuntimeError, CUDADriverError, missing libraries
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        return f"CuPy has no usable GPU ({type(err).__name__}: {first})"
    return None


def array_module(prefer_gpu: bool = True) -> ModuleType:
    """``cupy`` if ``prefer_gpu`` and a GPU is usable through it, else ``numpy``."""
    if prefer_gpu and cupy_usable() is None:
        import cupy

        return cupy
    return np


def module_of(array) -> ModuleType:
    """The array module (``numpy`` or ``cupy``) an array belongs to, without importing CuPy needlessly."""
    if type(array).__module__.split(".")[0] == "cupy":
        import cupy

        return cupy
    return np


def nms(boxes, scores, iou_threshold: float, xp: ModuleType | None = None, max_keep: int | None = None):
    """Kept indices after greedy NMS (at most ``max_keep``), an int64 array of ``xp`` (see the module docstring)."""
    xp = module_of(boxes) if xp is None else xp
    if xp is np:
        if module_of(boxes) is not np:
            boxes = boxes.get()
        if module_of(scores) is not np:
            scores = scores.get()
        return nms_numpy(np.asarray(boxes), np.asarray(scores), iou_threshold, max_keep=max_keep)
    if xp.__name__ != "cupy":
        raise ValueError(f"nms: xp must be numpy or cupy, not {xp.__name__}")
    return nms_cupy(boxes, scores, iou_threshold, max_keep=max_keep)
