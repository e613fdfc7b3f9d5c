"""pytest-benchmark: DAM matching and MBC focal loss at the paper's training shape.

    .venv/bin/python -m pytest benchmarks/test_bench_kernels.py --benchmark-columns=min,median,rounds

Cases, inputs and memory probing are ``acfd.kernels.bench`` (the same as ``acfd bench kernels``).
Triton cases run on CUDA only and skip elsewhere with the reason; peak memory (MiB) and, on CUDA,
achieved GB/s go to each benchmark's ``extra_info``. These measure; they assert nothing.
"""

import pytest
import torch

from acfd.kernels import bench

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ROUNDS = 20 if DEVICE == "cuda" else 2


def _synced(fn):
    def call():
        out = fn()
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        return out

    return call


@pytest.mark.parametrize("case", bench.CASES, ids=lambda c: c.name)
def test_bench_kernel(benchmark, case):
    reason = bench.skip_reason(case, DEVICE)
    if reason:
        pytest.skip(reason)
    fn, nbytes = bench.prepare(case, DEVICE)
    call = _synced(fn)
    if case.impl in ("compile", "triton"):
        call()  # compiles the Triton kernels / the torch.compile graph
    # the memory probe is also the warm-up run
    benchmark.extra_info["peak_mb"] = round(bench.peak_memory_bytes(fn, DEVICE) / 2**20, 1)
    benchmark.pedantic(call, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    if DEVICE == "cuda":
        benchmark.extra_info["gbps"] = round(nbytes / benchmark.stats.stats.median / 1e9, 1)
