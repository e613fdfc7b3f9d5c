"""Build a serialized TensorRT engine (``model.plan``) from the exported ONNX graph.

Uses the TensorRT Python API (``tensorrt``, the optional ``acfd[tensorrt]`` extra), imported only
when a build is asked for: where it is missing, or where no CUDA GPU is usable, ``check_available``
raises ``TensorRTError`` with one line that says so.

Optimisation profiles cover the input ``images`` uint8 ``[batch, height, width, 3]`` (NHWC pixels):

* ``"one"`` (default): a single profile from the smallest to the largest of the preset's test scales
  and its single scale, batch 1 to ``max_batch``; kernels are tuned at the middle test scale. Any
  shape in the range runs, so one execution context serves every scale.
* ``"per-scale"``: one profile per scale (height and width fixed, batch 1 to ``max_batch``): kernels
  tuned for each exact shape, at the price of a larger plan and a runtime that must pick the profile
  (Triton does so by input shape). Which is faster depends on the GPU: measure with ``trtexec``.

The timing cache (layer timings) is loaded before and saved after every build, by default in
``~/.cache/acfd/tensorrt-timing.cache``, so a rebuild or a build of another preset skips the
tactic timing it has already done. ``build_engine`` returns the manifest's ``tensorrt`` section and
prints the equivalent ``trtexec`` command line.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acfd.inference.config import InferenceConfig
from acfd.export.graph import INPUT_NAME, ExportError

PROFILE_MODES = ("one", "per-scale")
INSTALL_HINT = "pip install 'acfd[tensorrt]' on a machine with an NVIDIA GPU"


class TensorRTError(ExportError):
    """TensorRT is missing, has no GPU, or could not build the engine; the message says which."""


@dataclass(frozen=True)
class ShapeProfile:
    """Min / opt / max shape ``(batch, height, width, 3)`` of the ``images`` input."""

    min: tuple[int, int, int, int]
    opt: tuple[int, int, int, int]
    max: tuple[int, int, int, int]

    def to_dict(self) -> dict[str, Any]:
        return {"input": INPUT_NAME, "min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    def covers(self, shape: Sequence[int]) -> bool:
        return all(lo <= s <= hi for lo, s, hi in zip(self.min, shape, self.max))


def default_timing_cache() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "acfd" / "tensorrt-timing.cache"


def optimization_profiles(
    inference: InferenceConfig, max_batch: int, mode: str = "one", opt_batch: int = 1
) -> list[ShapeProfile]:
    """Profiles for the preset's test scales and single scale (see the module docstring)."""
    if mode not in PROFILE_MODES:
        raise TensorRTError(f"unknown TensorRT profile mode {mode!r}: choose one of {list(PROFILE_MODES)}")
    if max_batch < 1:
        raise TensorRTError(f"max batch {max_batch} must be at least 1")
    opt_batch = max(1, min(opt_batch, max_batch))
    scales = list(dict.fromkeys([tuple(s) for s in inference.test_scales] + [tuple(inference.single_scale)]))
    if mode == "per-scale":
        return [ShapeProfile((1, h, w, 3), (opt_batch, h, w, 3), (max_batch, h, w, 3)) for h, w in scales]
    test = sorted(inference.test_scales or [inference.single_scale], key=lambda s: s[0] * s[1])
    mid_h, mid_w = test[len(test) // 2]
    return [
        ShapeProfile(
            (1, min(h for h, _ in scales), min(w for _, w in scales), 3),
            (opt_batch, mid_h, mid_w, 3),
            (max_batch, max(h for h, _ in scales), max(w for _, w in scales), 3),
        )
    ]


def trtexec_command(
    onnx_path: str | Path,
    plan_path: str | Path,
    profiles: Sequence[ShapeProfile],
    fp16: bool,
    timing_cache: str | Path,
    workspace_mib: int,
) -> str:
    """The ``trtexec`` line that builds the same engine (one min/opt/max triplet per profile)."""

    def spec(shape: Sequence[int]) -> str:
        return f"{INPUT_NAME}:" + "x".join(str(d) for d in shape)

    args = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={plan_path}"]
    for p in profiles:
        args += [f"--minShapes={spec(p.min)}", f"--optShapes={spec(p.opt)}", f"--maxShapes={spec(p.max)}"]
    if fp16:
        args.append("--fp16")
    args += [f"--memPoolSize=workspace:{workspace_mib}M", f"--timingCacheFile={timing_cache}"]
    return shlex.join(args)


def import_tensorrt():
    """The ``tensorrt`` module, or ``TensorRTError`` when it is not installed."""
    try:
        import tensorrt
    except (ImportError, OSError) as err:  # OSError: the package is there, its CUDA libraries are not
        raise TensorRTError(f"TensorRT is not installed (cannot import tensorrt: {err}); {INSTALL_HINT}") from err
    return tensorrt


def check_available() -> None:
    """``TensorRTError`` unless TensorRT imports and can create a builder on a CUDA GPU."""
    trt = import_tensorrt()
    _make_builder(trt, trt.Logger(trt.Logger.ERROR))


def build_engine(
    onnx_path: str | Path,
    plan_path: str | Path,
    profiles: Sequence[ShapeProfile],
    fp16: bool = False,
    max_batch: int | None = None,
    timing_cache: str | Path | None = None,
    workspace_mib: int = 4096,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Build ``plan_path`` from ``onnx_path``; returns the manifest's ``tensorrt`` section."""
    trt = import_tensorrt()
    onnx_path, plan_path = Path(onnx_path), Path(plan_path)
    cache_path = Path(timing_cache) if timing_cache else default_timing_cache()
    if not profiles:
        raise TensorRTError("no optimisation profile given")
    max_batch = max_batch or max(p.max[0] for p in profiles)
    command = trtexec_command(onnx_path, plan_path, profiles, fp16, cache_path, workspace_mib)
    log(f"TensorRT {trt.__version__}: building {plan_path}; equivalent command:\n  {command}")

    logger = trt.Logger(trt.Logger.WARNING)
    builder = _make_builder(trt, logger)
    network = builder.create_network(_network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors)) or "no detail"
        raise TensorRTError(f"{onnx_path}: the TensorRT ONNX parser rejects the graph ({errors})")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    if fp16:
        if not getattr(builder, "platform_has_fast_fp16", True):
            log("warning: this GPU has no fast FP16; building with the FP16 flag anyway")
        config.set_flag(trt.BuilderFlag.FP16)
    for p in profiles:
        profile = builder.create_optimization_profile()
        profile.set_shape(INPUT_NAME, p.min, p.opt, p.max)
        if config.add_optimization_profile(profile) < 0:
            raise TensorRTError(f"TensorRT rejects the optimisation profile {p.to_dict()}")
    cache = _attach_timing_cache(config, cache_path, log)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TensorRTError(f"{onnx_path}: TensorRT could not build an engine (see its messages above)")
    _write_atomically(plan_path, memoryview(serialized))
    try:
        _write_atomically(cache_path, memoryview(cache.serialize()))
    except TensorRTError as err:  # the engine is built; a cache we cannot keep only costs time
        log(f"warning: timing cache not saved: {err}")
    log(f"wrote {plan_path} ({plan_path.stat().st_size / 2**20:.1f} MiB); timing cache {cache_path}")
    return {
        "file": plan_path.name,
        "fp16": bool(fp16),
        "max_batch": int(max_batch),
        "profiles": [p.to_dict() for p in profiles],
        "trtexec": command,
        "tensorrt_version": str(trt.__version__),
    }


def _make_builder(trt, logger):
    try:
        builder = trt.Builder(logger)
    except Exception as err:  # TensorRT raises a bare TypeError/RuntimeError when CUDA is unusable
        raise TensorRTError(
            f"TensorRT cannot create a builder: no usable CUDA GPU ({type(err).__name__}: {err})"
        ) from err
    if builder is None:
        raise TensorRTError("TensorRT cannot create a builder: no usable CUDA GPU")
    return builder


def _network_flags(trt) -> int:
    """Explicit batch: the default from TensorRT 10 on, a flag before it."""
    major = int(str(trt.__version__).split(".")[0])
    if major < 10:
        return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    return 0


def _attach_timing_cache(config, path: Path, log: Callable[[str], None]):
    """Load the timing cache at ``path`` (empty when absent or unreadable) into ``config``."""
    data = b""
    if path.is_file():
        data = path.read_bytes()
        log(f"reusing TensorRT timing cache {path} ({len(data)} bytes)")
    try:
        cache = config.create_timing_cache(data)
    except Exception:  # a corrupt file: TensorRT may raise instead of returning None
        cache = None
    if cache is None and data:
        log(f"warning: {path} is not a timing cache this TensorRT can read; starting an empty one")
        cache = config.create_timing_cache(b"")
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        log(f"warning: {path} does not match this GPU or TensorRT version; starting an empty one")
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=True)
    return cache


def _write_atomically(path: Path, data: memoryview) -> None:
    from acfd.atomic_file import replaced_on_success

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with replaced_on_success(path) as tmp:
            tmp.write_bytes(data)
    except OSError as err:
        raise TensorRTError(f"{path}: cannot write there ({err.strerror or err})") from err
