"""Compile every Triton kernel configuration for sm_80 and sm_90 ahead of time; print the resources.

    .venv/bin/python -m acfd.kernels.aot_report [--arch 80 90] [--json FILE]

One row per kernel, configuration and architecture: warps, registers per thread, spill stores /
loads, stack frame, shared memory and cubin size (the ``AOT_LAUNCHES`` tables of the kernel
modules; see ``kernels/aot.py``); then the CuPy NMS kernels compiled with NVRTC, where the ``gpu``
extra is installed (``kernels/nms/nvrtc.py``; their shared memory is the static part, the reduce
kernel's bitmap is sized at launch). A spill is flagged in the last column. Needs no GPU.
Exit codes: 0 all compiled, 1 a configuration failed to compile or a ``@triton.jit`` function is in
no table (one line each on stderr), 2 run under ``TRITON_INTERPRET=1`` (nothing is compiled there).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

HEADER = (
    "| kernel | config | warps | arch | registers | spill stores / loads (B) | stack (B) | shared (B) "
    "| cubin (KB) | spill |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
)


def table_row(r) -> str:
    flag = "**SPILL**" if r.spills else "none"
    return (
        f"| `{r.kernel}` | {r.label} | {r.num_warps} | sm_{r.arch} | {r.registers} | "
        f"{r.spill_stores} / {r.spill_loads} | {r.stack_frame} | {r.shared_memory} | "
        f"{r.cubin_bytes / 1024:.0f} | {flag} |"
    )


def one_line(err: Exception, kernel=None) -> str:
    """A compile error in one line: Triton's message with its file line (not the source excerpt), or
    the first line of any other error (ptxas)."""
    message = getattr(err, "error_message", None)
    where = ""
    line = getattr(getattr(err, "node", None), "lineno", None)
    if message and line is not None and hasattr(kernel, "starting_line_number"):
        where = f"{Path(kernel.fn.__code__.co_filename).name}:{kernel.starting_line_number + line}: "
    text = message or next((line for line in str(err).splitlines() if line.strip()), "")
    return f"{type(err).__name__}: {where}{' '.join(str(text).split())[:300]}"


def nms_kernels(archs: tuple[int, ...], failures: list[str]) -> list[dict]:
    """The CuPy NMS kernels compiled with NVRTC to sm_<arch> cubins: printed rows (``-`` for warps:
    the launch chooses the block size), or one line saying why they are skipped."""
    from acfd.kernels.nms import cupy_nms, nvrtc

    reason = nvrtc.unavailable()
    if reason:
        print(f"aot_report: CuPy NMS kernels skipped: {reason}", file=sys.stderr)
        return []
    rows = []
    for arch in archs:
        try:
            cubin, log = nvrtc.compile_source(cupy_nms.CUDA_SOURCE, cupy_nms.COMPILE_OPTIONS, arch, cubin=True)
        except RuntimeError as err:
            failures.append(f"aot_report: CuPy NMS kernels do not compile for sm_{arch}: {err}")
            continue
        for name, r in sorted(nvrtc.ptxas_resources(log).items()):
            rows.append({"kernel": name, "label": "CuPy, NVRTC", "arch": arch, "cubin_bytes": len(cubin), **r})
            flag = "**SPILL**" if r["spill_stores"] or r["spill_loads"] else "none"
            print(
                f"| `{name}` | CuPy, NVRTC | - | sm_{arch} | {r['registers']} | {r['spill_stores']} / "
                f"{r['spill_loads']} | {r['stack_frame']} | {r['shared_memory']} | {len(cubin) / 1024:.0f} | {flag} |"
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m acfd.kernels.aot_report", description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, nargs="+", default=None, help="compute capabilities (default: 80 90)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the rows as JSON")
    parser.add_argument(
        "--also",
        nargs="+",
        default=[],
        metavar="MODULE",
        help="more kernel modules (importable, each with AOT_LAUNCHES) to compile, e.g. one being written",
    )
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("aot_report: TRITON_INTERPRET=1 is set: unset it, the interpreter compiles nothing", file=sys.stderr)
        return 2
    from acfd.kernels import aot

    archs = tuple(args.arch or aot.ARCHS)
    modules = aot.KERNEL_MODULES + tuple(args.also)
    failures = [
        f"aot_report: {name} is @triton.jit but in no AOT_LAUNCHES / AOT_INLINED table"
        for name in aot.unlisted_jit_functions(modules=modules)
    ]
    rows = []
    print(HEADER, flush=True)
    for launch in aot.launches(modules):
        for arch in archs:
            try:
                resources, _ = aot.compile_launch(launch, arch)
            except Exception as err:  # CompilationError, ptxas failures: report them all, then fail
                failures.append(
                    f"aot_report: {launch.name} [{launch.label}] does not compile for sm_{arch}: "
                    f"{one_line(err, launch.kernel)}"
                )
                continue
            rows.append(resources)
            print(table_row(resources), flush=True)
    nms_rows = nms_kernels(archs, failures)
    if args.json:
        args.json.write_text(
            json.dumps(
                {"rows": [dataclasses.asdict(r) for r in rows], "nms_rows": nms_rows, "failures": failures}, indent=1
            )
        )
    for line in failures:
        print(line, file=sys.stderr)
    spills = sum(r.spills for r in rows) + sum(r["spill_stores"] + r["spill_loads"] > 0 for r in nms_rows)
    print(f"{len(rows)} compiled, {len(failures)} failed, {spills} with spills", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
