"""NVRTC for the CuPy NMS kernels without a GPU: find the library, compile for a chosen architecture.

``cupy.RawModule`` compiles ``cupy_nms.CUDA_SOURCE`` with NVRTC when a kernel is first called, on
the GPU it runs on. That is too late to learn that the source does not compile for sm_80 or sm_90,
and ``cupy.cuda.compiler.compile_using_nvrtc`` cannot be used to learn it earlier: it asks the
runtime for the current device even when given an architecture (``cudaErrorInsufficientDriver``
on a machine without one). NVRTC itself needs no device, so :func:`compile_source` calls it
through CuPy's own binding (``cupy_backends.cuda.libs.nvrtc``, the one ``RawModule`` uses) with
the options ``RawModule`` adds (:data:`CUPY_OPTIONS`).

CuPy 13 does not look for NVRTC in the ``nvidia-cuda-nvrtc-cu12`` wheel (only in a CUDA toolkit
on the library path): :func:`preload_nvrtc` loads the wheel's ``libnvrtc.so.12`` first, after
which CuPy's ``dlopen`` finds it. ``benchmarks/gpu_check.py`` calls it before any CuPy compile.
Both come with the ``gpu`` extra (``pip install -e .[gpu]``); neither is in the default install.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.metadata
import re
from pathlib import Path

WHEEL = "nvidia-cuda-nvrtc-cu12"
LIBRARY = "nvidia/cuda_nvrtc/lib/libnvrtc.so.12"
# what cupy.RawModule adds to the module's own options (CuPy 13.6, NVRTC 12): cupy.cuda.compiler
CUPY_OPTIONS = ("-ftz=true", "--device-as-default-execution-space")


def wheel_library() -> Path | None:
    """``libnvrtc.so.12`` of the installed ``nvidia-cuda-nvrtc-cu12`` wheel, or ``None``."""
    try:
        path = Path(importlib.metadata.distribution(WHEEL).locate_file(LIBRARY))
    except importlib.metadata.PackageNotFoundError:
        return None
    return path if path.is_file() else None


@functools.lru_cache(maxsize=1)
def preload_nvrtc() -> str | None:
    """Load the wheel's NVRTC globally so that CuPy finds it; ``None`` when NVRTC is loadable
    (from the wheel or the system), else a one-line reason why not (cached)."""
    library = wheel_library()
    try:
        ctypes.CDLL(str(library) if library else "libnvrtc.so.12", mode=ctypes.RTLD_GLOBAL)
    except OSError as err:
        return f"NVRTC is not loadable ({err}; pip install {WHEEL}, or pip install -e .[gpu])"
    return None


@functools.lru_cache(maxsize=1)
def unavailable() -> str | None:
    """``None`` when :func:`compile_source` can run here, else a one-line reason why not."""
    try:
        from cupy_backends.cuda.libs import nvrtc
    except Exception as err:  # ImportError, or a broken library underneath
        return f"CuPy is not importable ({type(err).__name__}: {err}; pip install -e .[gpu])"
    reason = preload_nvrtc()
    if reason:
        return reason
    try:
        nvrtc.getVersion()
    except Exception as err:
        return f"CuPy cannot use NVRTC ({type(err).__name__}: {err})"
    return None


def version() -> tuple[int, int]:
    from cupy_backends.cuda.libs import nvrtc

    preload_nvrtc()
    return tuple(nvrtc.getVersion())


def compile_source(source: str, options: tuple[str, ...], arch: int, cubin: bool = False) -> tuple[bytes, str]:
    """``(ptx or cubin, NVRTC log)`` of ``source`` compiled as ``RawModule`` would for
    ``compute_<arch>`` (PTX) or ``sm_<arch>`` (cubin, with ptxas's resource report in the log).
    Raises ``RuntimeError`` with NVRTC's log when it does not compile."""
    from cupy_backends.cuda.libs import nvrtc

    reason = unavailable()
    if reason:
        raise RuntimeError(f"nvrtc: {reason}")
    arch_option = f"-arch={'sm' if cubin else 'compute'}_{arch}"
    verbose = ("--ptxas-options=-v",) if cubin else ()
    program = nvrtc.createProgram(source, "acfd_nms.cu", (), ())
    try:
        try:
            nvrtc.compileProgram(program, (*options, *CUPY_OPTIONS, arch_option, *verbose))
        except nvrtc.NVRTCError as err:
            log = nvrtc.getProgramLog(program)
            first = next((line.strip() for line in log.splitlines() if "error" in line), log.strip())
            raise RuntimeError(f"nvrtc: {arch_option}: {err}: {first}") from None
        log = nvrtc.getProgramLog(program)
        code = nvrtc.getCUBIN(program) if cubin else nvrtc.getPTX(program)
    finally:
        nvrtc.destroyProgram(program)
    return (code if isinstance(code, bytes) else code.encode()), log


def ptxas_resources(log: str) -> dict[str, dict[str, int]]:
    """Per kernel: registers, spill stores / loads, stack frame (bytes) and static shared memory
    (bytes) from the ``--ptxas-options=-v`` report in an NVRTC log."""
    resources: dict[str, dict[str, int]] = {}
    for block in re.split(r"(?=ptxas info\s*: Compiling entry function)", log):
        name = re.search(r"Compiling entry function '(\w+)'", block)
        regs = re.search(r"Used (\d+) registers", block)
        frame = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", block)
        if not (name and regs and frame):
            continue
        smem = re.search(r"(\d+) bytes smem", block)
        resources[name.group(1)] = {
            "registers": int(regs.group(1)),
            "stack_frame": int(frame.group(1)),
            "spill_stores": int(frame.group(2)),
            "spill_loads": int(frame.group(3)),
            "shared_memory": int(smem.group(1)) if smem else 0,
        }
    return resources
