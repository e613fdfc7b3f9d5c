"""CPU latency at 640x640, batch 1, of the exported graph in ONNX Runtime vs the PyTorch
``Predictor`` in train form and in fused (deploy) form: the same work (network, sigmoid, box
decoding) in each, so the figures compare runtimes and forms, not extra steps.

Run: ``.venv/bin/python -m pytest benchmarks/test_bench_export.py --benchmark-columns=min,median,mean,rounds``.
Measures only (no assertions on time). acfd51 runs a few rounds: one forward is seconds on a CPU.
Weights are freshly initialised (latency does not depend on their values).
"""

from __future__ import annotations

import pytest
import torch

from acfd.training.config import load_preset
from acfd.export.graph import export_model_from_module, fuse_copy, onnx_session
from acfd.training.model import Predictor, build_model

INPUT = (1, 3, 640, 640)
ROUNDS = {"tiny": 10, "acfd51": 3}
_CACHE: dict[str, dict] = {}


def _prepared(preset_name: str, tmp_path_factory) -> dict:
    """Model forms and an ONNX Runtime session for one preset, built once per run."""
    if preset_name not in _CACHE:
        torch.manual_seed(0)
        preset = load_preset(preset_name)
        model = build_model(preset).eval()
        out = tmp_path_factory.mktemp(f"export-{preset_name}")
        export_model_from_module(model, preset, out, progress=False, verify=False)
        _CACHE[preset_name] = {
            "train": Predictor(model).eval(),
            "fused": Predictor(fuse_copy(model)).eval(),
            "session": onnx_session(out / "model.onnx"),
        }
    return _CACHE[preset_name]


@pytest.mark.parametrize("runner", ["onnxruntime", "torch-train", "torch-fused"])
@pytest.mark.parametrize("preset", ["tiny", "acfd51"])
def test_latency_cpu(benchmark, tmp_path_factory, preset, runner):
    prepared = _prepared(preset, tmp_path_factory)
    images = torch.randn(*INPUT, generator=torch.Generator().manual_seed(0))
    array = images.numpy()
    benchmark.group = f"{preset} 640x640 batch 1, CPU (torch {torch.get_num_threads()} threads)"
    benchmark.extra_info.update(preset=preset, runner=runner, input=list(INPUT))

    if runner == "onnxruntime":
        session = prepared["session"]

        def run() -> None:
            session.run(["scores", "boxes"], {"images": array})

    else:
        predictor = prepared["train" if runner == "torch-train" else "fused"]

        def run() -> None:
            with torch.inference_mode():
                predictor(images)

    benchmark.pedantic(run, rounds=ROUNDS[preset], iterations=1, warmup_rounds=1)
