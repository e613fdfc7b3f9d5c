"""Ahead-of-time compilation of every Triton kernel for sm_80 and sm_90 (kernels/aot.py), no GPU needed.

The compiling runs in a child process without ``TRITON_INTERPRET`` (this process has it set by
conftest.py, which turns ``@triton.jit`` into interpreter objects). The launch tables are checked
here against what the wrappers really launch, by catching their launches.
"""

import contextlib
import inspect
import json
import os
import subprocess
import sys
import textwrap
from unittest import mock

import pytest
import torch

from acfd.kernels import aot, bench
from acfd.kernels.dam_match import dam_match
from acfd.kernels.dam_match import triton_kernel as dam_kernels
from acfd.kernels.mbc_loss import mbc_focal_loss
from acfd.kernels.mbc_loss import triton_kernel as mbc_kernels


def _report(tmp_path, *extra, pythonpath=None):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path / "triton-cache")
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH")]))
    out = tmp_path / "aot.json"
    proc = subprocess.run(
        [sys.executable, "-m", "acfd.kernels.aot_report", "--json", str(out), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc, json.loads(out.read_text()) if out.exists() else None


def test_every_kernel_configuration_compiles_for_sm80_and_sm90(tmp_path):
    proc, report = _report(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert report["failures"] == []
    compiled = {(r["kernel"], r["label"], r["arch"]) for r in report["rows"]}
    wanted = {(entry.name, entry.label, arch) for entry in aot.launches() for arch in aot.ARCHS}
    assert compiled == wanted
    assert {
        "dam_match_kernel",
        "mbc_focal_forward_kernel",
        "mbc_focal_finalize_kernel",
        "mbc_focal_backward_kernel",
    } == {name for name, _, _ in compiled}
    for row in report["rows"]:  # resources were read from ptxas, and the defaults do not spill
        assert 0 < row["registers"] <= 255 and row["cubin_bytes"] > 1000, row
        assert row["spill_stores"] == 0 and row["spill_loads"] == 0, row
    assert "| `dam_match_kernel` | fallback=on | 8 | sm_90 |" in proc.stdout


def test_a_kernel_that_does_not_compile_fails_the_report(tmp_path):
    # the error class the interpreter let through once: a plain global read inside a kernel
    (tmp_path / "broken_kernel.py").write_text(
        textwrap.dedent("""
        import triton
        import triton.language as tl
        from acfd.kernels.aot import AotLaunch

        SHIFT = 3

        @triton.jit
        def broken_kernel(x_ptr, BLOCK: tl.constexpr):
            offs = tl.arange(0, BLOCK)
            tl.store(x_ptr + offs, tl.load(x_ptr + offs) + SHIFT)

        AOT_LAUNCHES = (AotLaunch(broken_kernel, "fp32", {"x_ptr": "*fp32"}, {"BLOCK": 128}, 4),)
        AOT_INLINED = ()
    """)
    )
    proc, report = _report(tmp_path, "--arch", "90", "--also", "broken_kernel", pythonpath=tmp_path)
    assert proc.returncode == 1
    assert "broken_kernel [fp32] does not compile for sm_90: CompilationError" in proc.stderr
    assert "Cannot access global variable SHIFT" in proc.stderr
    assert len(report["failures"]) == 1 and len(report["rows"]) == len(aot.launches())


def test_every_triton_jit_function_is_in_a_table():
    assert aot.unlisted_jit_functions() == []
    found = aot.jit_functions_in_source()
    assert ("acfd.kernels.dam_match.triton_kernel", "dam_match_kernel") in found
    assert ("acfd.kernels.mbc_loss.triton_kernel", "_focal_terms") in found
    # an inlined helper must really be called from a listed kernel (or helper) of its module
    for module in (dam_kernels, mbc_kernels):
        callers = [entry.kernel for entry in module.AOT_LAUNCHES] + list(module.AOT_INLINED)
        for helper in module.AOT_INLINED:
            assert any(helper.fn.__name__ in c.fn.__code__.co_names for c in callers if c is not helper), helper


def test_a_new_unlisted_kernel_is_found(tmp_path):
    (tmp_path / "kernels").mkdir()
    (tmp_path / "kernels" / "extra.py").write_text("import triton\n\n@triton.jit\ndef new_kernel(x):\n    pass\n")
    assert aot.jit_functions_in_source(tmp_path) == [("acfd.kernels.extra", "new_kernel")]
    assert aot.unlisted_jit_functions(tmp_path) == ["acfd.kernels.extra.new_kernel"]


def test_ptxas_report_is_parsed():
    log = (
        "ptxas info    : Function properties for k\n    400 bytes stack frame, 420 bytes spill stores, "
        "404 bytes spill loads\nptxas info    : Used 255 registers, used 1 barriers\n"
    )
    assert aot.parse_ptxas_log(log) == {"registers": 255, "stack_frame": 400, "spill_stores": 420, "spill_loads": 404}
    with pytest.raises(RuntimeError, match="could not read the ptxas report"):
        aot.parse_ptxas_log("nothing here")


# ---------------------------------------------------------------- the tables hold what the wrappers launch


def _caught_launches(kernels, call):
    """``[(kernel, signature, constexprs, num_warps, options)]`` of every launch ``call()`` makes."""
    seen = []

    def catcher(kernel):
        def run(*args, grid=None, warmup=False, **kwargs):
            names = kernel.arg_names
            bound = dict(zip(names, args), **{k: v for k, v in kwargs.items() if k in names})
            constexprs = {k: bound.pop(k) for k in list(bound) if k in _constexpr_names(kernel)}
            signature = {k: _type_of(v) for k, v in bound.items()}
            options = {k: v for k, v in kwargs.items() if k not in names and k != "num_warps"}
            seen.append((kernel, signature, constexprs, kwargs.get("num_warps"), options))

        return run

    with contextlib.ExitStack() as stack:
        for kernel in kernels:
            stack.enter_context(mock.patch.object(kernel, "run", catcher(kernel)))
        call()
    return seen


def _constexpr_names(kernel):
    return {p.name for p in inspect.signature(kernel.fn).parameters.values() if "constexpr" in str(p.annotation)}


def _type_of(value):
    if isinstance(value, torch.Tensor):
        return aot.triton_type(value.dtype)
    if isinstance(value, bool):
        return "u1"
    if isinstance(value, int):
        return "i32" if -(2**31) <= value < 2**31 else "i64"
    return "fp32"


def _assert_listed(launches, table):
    assert launches
    for kernel, signature, constexprs, num_warps, options in launches:
        entries = [(e.signature, e.constexprs, e.num_warps, e.options) for e in table if e.kernel is kernel]
        assert (signature, constexprs, num_warps, options) in entries, (kernel.fn.__name__, signature, constexprs)


@pytest.mark.parametrize("fallback", [False, True])
def test_dam_match_launches_only_listed_configurations(fallback):
    inp = bench.dam_inputs(batch=2, image=128, seed=1)
    inp.gt_boxes = inp.gt_boxes.half()  # any floating input reaches the kernel as fp32

    def call():
        return dam_match(
            inp.anchors,
            inp.pred_boxes,
            inp.gt_boxes,
            inp.gt_count,
            best_anchor_fallback=fallback,
            impl="triton",
        )

    launches = _caught_launches([dam_kernels.dam_match_kernel], call)
    assert len(launches) == 1 and launches[0][2]["FALLBACK"] is fallback
    _assert_listed(launches, dam_kernels.AOT_LAUNCHES)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("label_dtype", [torch.int64, torch.int32, torch.uint8])
def test_mbc_loss_launches_only_listed_configurations(dtype, label_dtype):
    logits, labels = bench.loss_inputs(batch=2, num_anchors=3000, dtype=dtype)
    x = logits.requires_grad_(True)
    kernels = [
        mbc_kernels.mbc_focal_forward_kernel,
        mbc_kernels.mbc_focal_finalize_kernel,
        mbc_kernels.mbc_focal_backward_kernel,
    ]
    launches = _caught_launches(kernels, lambda: mbc_focal_loss(x, labels.to(label_dtype), impl="triton").backward())
    assert [k for k, *_ in launches] == kernels
    _assert_listed(launches, mbc_kernels.AOT_LAUNCHES)
