"""Ahead-of-time compilation of the project's OpenAI Triton kernels for real GPUs, on any machine.

Each kernel module lists, beside its wrapper, what that wrapper can launch:

``AOT_LAUNCHES``
    one :class:`AotLaunch` per configuration: the ``@triton.jit`` kernel, its argument types, its
    ``constexpr`` values, ``num_warps`` and compiler options. The wrapper launches with the same
    module constants, so the table cannot drift from what runs.
``AOT_INLINED``
    the ``@triton.jit`` helpers that are only called from those kernels (compiled as part of them).

:func:`compile_launch` compiles one entry for one architecture (``80`` = A100, ``90`` = H100/H200)
with the ``ptxas`` bundled in the triton wheel: no GPU, no driver. It returns the resources ptxas
reports: registers per thread, spill stores/loads and stack frame in bytes, Triton's shared memory,
the cubin size. :func:`unlisted_jit_functions` scans the source tree for ``@triton.jit`` functions
that no table names, so a new kernel cannot be left out of the check.

Launch specialisation: pointers are compiled as 16-byte aligned (what Triton assumes for torch
allocations); integer arguments are compiled unspecialised (``i32``, no divisibility): a launch
whose count is divisible by 16 or equals 1 gets the same code with a constant folded.

This needs a triton that really compiles: with ``TRITON_INTERPRET=1`` set before triton is
imported, ``@triton.jit`` gives interpreter objects and :func:`compile_launch` refuses them.
``python -m acfd.kernels.aot_report`` prints the table (and runs in a clean environment).
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import io
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

ARCHS = (80, 90)  # sm_80 (A100), sm_90 (H100, H200)
KERNEL_MODULES = (
    "acfd.kernels.dam_match.triton_kernel",
    "acfd.kernels.mbc_loss.triton_kernel",
)
ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("acfd", "training", "kernels", "serving", "clients", "model_repository", "benchmarks", "scripts")
TORCH_TO_TRITON = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16", "int64": "i64", "int32": "i32"}


@dataclass(frozen=True)
class AotLaunch:
    """One configuration a wrapper can launch: ``kernel[grid](*args, **constexprs, num_warps=..., **options)``."""

    kernel: object  # triton.runtime.jit.JITFunction
    label: str  # what varies, e.g. "fp16" or "fallback=on"
    signature: dict[str, str]  # every non-constexpr argument -> "*fp32", "i32", "fp32", ...
    constexprs: dict[str, object]
    num_warps: int
    options: dict = field(default_factory=dict)  # e.g. {"enable_fp_fusion": False}

    @property
    def name(self) -> str:
        return getattr(self.kernel, "__name__", None) or self.kernel.fn.__name__


@dataclass(frozen=True)
class Resources:
    kernel: str
    label: str
    arch: int
    num_warps: int
    registers: int
    spill_stores: int  # bytes
    spill_loads: int  # bytes
    stack_frame: int  # bytes
    shared_memory: int  # bytes Triton allocates (dynamic shared memory of the launch)
    cubin_bytes: int
    seconds: float

    @property
    def spills(self) -> bool:
        return self.spill_stores > 0 or self.spill_loads > 0


def triton_type(dtype) -> str:
    """``"*fp32"``-style pointer type of a torch dtype."""
    name = str(dtype).replace("torch.", "")
    if name not in TORCH_TO_TRITON:
        raise ValueError(f"aot: no Triton pointer type for {dtype}")
    return "*" + TORCH_TO_TRITON[name]


def launches(modules: tuple[str, ...] = KERNEL_MODULES) -> list[AotLaunch]:
    """Every ``AOT_LAUNCHES`` entry of the kernel modules, in module order."""
    return [entry for name in modules for entry in importlib.import_module(name).AOT_LAUNCHES]


def compile_launch(launch: AotLaunch, arch: int):
    """``(Resources, compiled kernel)`` of one table entry compiled for ``sm_<arch>``.

    Raises ``triton.compiler.errors.CompilationError`` (or ``RuntimeError`` from ptxas) when the
    kernel does not compile for that architecture."""
    import triton
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.runtime.jit import JITFunction

    if not isinstance(launch.kernel, JITFunction):
        raise RuntimeError(
            f"aot: {launch.name} is a {type(launch.kernel).__name__}, not a JITFunction "
            "(TRITON_INTERPRET=1 was set before triton was imported; compile in a clean process)"
        )
    arg_names = launch.kernel.arg_names
    missing = [a for a in arg_names if a not in launch.signature and a not in launch.constexprs]
    if missing:
        raise ValueError(f"aot: {launch.name} [{launch.label}]: no type or constexpr for {missing}")
    signature = {a: launch.signature.get(a, "constexpr") for a in arg_names}
    aligned = {(i,): [["tt.divisibility", 16]] for i, a in enumerate(arg_names) if signature[a].startswith("*")}
    source = ASTSource(fn=launch.kernel, signature=signature, constexprs=launch.constexprs, attrs=aligned)
    log = io.StringIO()
    started = time.perf_counter()
    with knobs.nvidia.scope(), knobs.compilation.scope():
        knobs.nvidia.dump_ptxas_log = True  # printed on stdout by the backend
        knobs.compilation.always_compile = True  # a cached cubin would come without its ptxas log
        with contextlib.redirect_stdout(log):
            compiled = triton.compile(
                source, target=GPUTarget("cuda", arch, 32), options={"num_warps": launch.num_warps, **launch.options}
            )
    seconds = time.perf_counter() - started
    stats = parse_ptxas_log(log.getvalue())
    return Resources(
        kernel=launch.name,
        label=launch.label,
        arch=arch,
        num_warps=launch.num_warps,
        shared_memory=int(compiled.metadata.shared),
        cubin_bytes=len(compiled.asm["cubin"]),
        seconds=round(seconds, 2),
        **stats,
    ), compiled


def parse_ptxas_log(text: str) -> dict[str, int]:
    """Registers, spill stores / loads and stack frame from ``ptxas -v`` output."""
    regs = re.search(r"Used (\d+) registers", text)
    frame = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", text)
    if not regs or not frame:
        raise RuntimeError(f"aot: could not read the ptxas report: {text.strip()[:300]!r}")
    return {
        "registers": int(regs.group(1)),
        "stack_frame": int(frame.group(1)),
        "spill_stores": int(frame.group(2)),
        "spill_loads": int(frame.group(3)),
    }


# ---------------------------------------------------------------- coverage


def jit_functions_in_source(root: Path = ROOT) -> list[tuple[str, str]]:
    """``(module, function)`` for every function decorated with ``triton.jit`` / ``jit`` (also
    ``triton.jit(...)`` and ``triton.autotune``-wrapped ones) in the project's source folders."""
    found = []
    for folder in SOURCE_DIRS:
        for path in sorted((root / folder).rglob("*.py")) if (root / folder).is_dir() else ():
            if ".venv" in path.parts or "__pycache__" in path.parts:
                continue
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef) and any(_is_jit(d) for d in node.decorator_list):
                    found.append((_module_name(path, root), node.name))
    return found


def _is_jit(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
    return name in ("jit", "autotune", "heuristics")


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    top = {"training": "acfd.training", "kernels": "acfd.kernels", "serving": "acfd.serving", "clients": "acfd.clients"}
    if parts[0] in top:
        parts = top[parts[0]].split(".") + parts[1:]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def unlisted_jit_functions(root: Path = ROOT, modules: tuple[str, ...] = KERNEL_MODULES) -> list[str]:
    """``module.function`` of every ``@triton.jit`` function that is neither a kernel in some
    ``AOT_LAUNCHES`` nor a helper in ``AOT_INLINED`` of a module in ``modules``."""
    listed = set()
    for name in modules:
        module = importlib.import_module(name)
        listed |= {(name, _fn_name(entry.kernel)) for entry in module.AOT_LAUNCHES}
        listed |= {(name, _fn_name(helper)) for helper in module.AOT_INLINED}
    return [f"{m}.{f}" for m, f in jit_functions_in_source(root) if (m, f) not in listed]


def _fn_name(jitted) -> str:
    return getattr(jitted, "__name__", None) or jitted.fn.__name__
