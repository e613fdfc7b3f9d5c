"""CPU forward latency of the ACFD network at 640x640, batch 1: train form vs fused (deploy) form.

Run: ``.venv/bin/python -m pytest benchmarks/test_bench_model.py --benchmark-columns=min,mean,median,rounds``.
Measures only (no assertions on time). acfd51 runs a few rounds: one forward is seconds on a CPU.
"""

import pytest
import torch

from acfd.training.model import build_model

INPUT = (1, 3, 640, 640)
ROUNDS = {"tiny": 10, "acfd51": 3}


@pytest.mark.parametrize("form", ["train", "fused"])
@pytest.mark.parametrize("preset", ["tiny", "acfd51"])
def test_forward_latency_cpu(benchmark, preset, form):
    torch.manual_seed(0)
    model = build_model(preset).eval()
    if form == "fused":
        model.fuse()
    x = torch.randn(*INPUT)
    benchmark.group = f"{preset} forward 640x640 batch 1 (CPU, {torch.get_num_threads()} threads)"
    benchmark.extra_info.update(preset=preset, form=form, input=list(INPUT))

    def forward() -> None:
        with torch.inference_mode():
            model(x)

    benchmark.pedantic(forward, rounds=ROUNDS[preset], iterations=1, warmup_rounds=1)
