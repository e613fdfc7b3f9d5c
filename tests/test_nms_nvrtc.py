"""The CuPy NMS kernels (cupy_nms.CUDA_SOURCE) compiled with NVRTC for compute_80 / compute_90 and
sm_80 / sm_90, without a GPU (kernels/nms/nvrtc.py). Needs the ``gpu`` extra (cupy-cuda12x and
nvidia-cuda-nvrtc-cu12, about 200 MB, not in the default install); skipped, saying why, without it."""

import pytest

from acfd.kernels.nms import cupy_nms, nvrtc

REASON = nvrtc.unavailable()
needs_nvrtc = pytest.mark.skipif(REASON is not None, reason=f"NVRTC compile check: {REASON}")
ENTRIES = ("nms_iou_bitmask", "nms_serial_reduce")


@needs_nvrtc
@pytest.mark.parametrize("arch", [80, 90])
def test_nms_kernels_compile_to_ptx_and_cubin(arch):
    ptx, _ = nvrtc.compile_source(cupy_nms.CUDA_SOURCE, cupy_nms.COMPILE_OPTIONS, arch)
    text = ptx.decode()
    assert f".target sm_{arch}" in text
    assert all(f".entry {name}(" in text for name in ENTRIES)
    cubin, log = nvrtc.compile_source(cupy_nms.CUDA_SOURCE, cupy_nms.COMPILE_OPTIONS, arch, cubin=True)
    assert cubin[:4] == b"\x7fELF"
    resources = nvrtc.ptxas_resources(log)
    assert set(resources) == set(ENTRIES), log
    for name, row in resources.items():
        assert 0 < row["registers"] <= 255 and row["spill_stores"] == 0 and row["spill_loads"] == 0, (name, row)
    assert resources["nms_iou_bitmask"]["shared_memory"] == cupy_nms.BLOCK * 4 * 4  # the column boxes


@needs_nvrtc
def test_a_source_that_does_not_compile_raises_one_line():
    with pytest.raises(RuntimeError, match=r'-arch=compute_90: .*identifier "undefined_thing" is undefined'):
        nvrtc.compile_source('extern "C" __global__ void k() { undefined_thing(); }', (), 90)


def test_ptxas_report_is_parsed_per_kernel():
    log = (
        "ptxas info    : Compiling entry function 'a' for 'sm_90'\nptxas info    : Function properties for a\n"
        "ptxas         .     8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads\n"
        "ptxas info    : Used 40 registers, used 1 barriers, 1024 bytes smem\n"
        "ptxas info    : Compiling entry function 'b' for 'sm_90'\nptxas info    : Function properties for b\n"
        "ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
        "ptxas info    : Used 18 registers, used 1 barriers\n"
    )
    assert nvrtc.ptxas_resources(log) == {
        "a": {"registers": 40, "stack_frame": 8, "spill_stores": 4, "spill_loads": 4, "shared_memory": 1024},
        "b": {"registers": 18, "stack_frame": 0, "spill_stores": 0, "spill_loads": 0, "shared_memory": 0},
    }
