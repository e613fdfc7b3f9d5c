"""TensorRT engine builder: profiles and trtexec line (everywhere), the missing-TensorRT error
(where TensorRT is absent), and a built FP16 engine against ONNX Runtime (where TensorRT and a
CUDA GPU are present; skipped otherwise).
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from acfd.cli import main as acfd_main
from acfd.training.checkpoint import save_checkpoint
from acfd.training.config import InferenceConfig, load_preset
from acfd.inference import image_io
from acfd.training.model import build_model
from acfd.export.tensorrt_build import ShapeProfile, build_engine, optimization_profiles, trtexec_command

HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None
HAVE_GPU = torch.cuda.is_available()


def test_one_profile_spans_every_scale():
    (profile,) = optimization_profiles(InferenceConfig(), max_batch=8)
    # heights 480..800 and widths 640 (single scale 640x640) .. 1075; tuned at the middle test scale
    assert profile == ShapeProfile(min=(1, 480, 640, 3), opt=(1, 640, 860, 3), max=(8, 800, 1075, 3))
    for h, w in [(480, 645), (640, 860), (800, 1075), (640, 640)]:
        assert profile.covers((8, h, w, 3)) and profile.covers((1, h, w, 3))
    assert not profile.covers((9, 640, 640, 3))
    assert not profile.covers((1, 801, 1075, 3))


def test_per_scale_profiles():
    profiles = optimization_profiles(InferenceConfig(), max_batch=4, mode="per-scale", opt_batch=2)
    assert profiles == [
        ShapeProfile((1, 480, 645, 3), (2, 480, 645, 3), (4, 480, 645, 3)),
        ShapeProfile((1, 640, 860, 3), (2, 640, 860, 3), (4, 640, 860, 3)),
        ShapeProfile((1, 800, 1075, 3), (2, 800, 1075, 3), (4, 800, 1075, 3)),
        ShapeProfile((1, 640, 640, 3), (2, 640, 640, 3), (4, 640, 640, 3)),
    ]
    assert profiles[0].to_dict() == {
        "input": "images",
        "min": [1, 480, 645, 3],
        "opt": [2, 480, 645, 3],
        "max": [4, 480, 645, 3],
    }


def test_profile_mode_and_batch_are_checked():
    from acfd.export.tensorrt_build import TensorRTError

    with pytest.raises(TensorRTError, match="per-level"):
        optimization_profiles(InferenceConfig(), max_batch=8, mode="per-level")
    with pytest.raises(TensorRTError, match="max batch 0"):
        optimization_profiles(InferenceConfig(), max_batch=0)


def test_trtexec_command_line():
    profiles = [ShapeProfile((1, 480, 640, 3), (1, 640, 860, 3), (8, 800, 1075, 3))]
    line = trtexec_command(
        "e/model.onnx", "e/model.plan", profiles, fp16=True, timing_cache="/c/t.cache", workspace_mib=4096
    )
    assert shlex.split(line) == [
        "trtexec",
        "--onnx=e/model.onnx",
        "--saveEngine=e/model.plan",
        "--minShapes=images:1x480x640x3",
        "--optShapes=images:1x640x860x3",
        "--maxShapes=images:8x800x1075x3",
        "--fp16",
        "--memPoolSize=workspace:4096M",
        "--timingCacheFile=/c/t.cache",
    ]


def _calibrated_tiny() -> nn.Module:
    """Fresh tiny network whose BN statistics come from one train-mode pass (sane activations)."""
    torch.manual_seed(0)
    model = build_model("tiny")
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        bn.reset_running_stats()
        bn.momentum = None
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (640, 640, 3), dtype=np.uint8)
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(image_io.normalize(pixels))[None])
    return model.eval()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    preset = load_preset("tiny")
    path = tmp_path_factory.mktemp("trt") / "last.pt"
    # Calibrated BN only where the engine comparison runs; the error-message test needs no forward.
    model = _calibrated_tiny() if HAVE_TENSORRT and HAVE_GPU else build_model(preset)
    return save_checkpoint(path, {"preset": preset.to_dict(), "model": model.state_dict()})


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is installed: the missing-TensorRT message cannot be checked")
def test_tensorrt_flag_without_tensorrt_fails_clearly(tiny_checkpoint, tmp_path, capsys):
    rc = acfd_main(["export", "--weights", str(tiny_checkpoint), "--out", str(tmp_path / "e"), "--tensorrt", "--quiet"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc != 0
    assert len(lines) == 1 and "TensorRT is not installed" in lines[0], lines
    assert not (tmp_path / "e" / "model.onnx").exists()  # refused before the export work


class _FakeTensorRT(types.ModuleType):
    """Just enough of the ``tensorrt`` API to drive ``build_engine`` without a GPU; it records what
    the builder was asked for and "serializes" that record as the plan."""

    __version__ = "10.0.0"
    MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
    BuilderFlag = types.SimpleNamespace(FP16="fp16")
    NetworkDefinitionCreationFlag = types.SimpleNamespace(EXPLICIT_BATCH=0)

    def __init__(self):
        super().__init__("tensorrt")
        self.calls: dict = {"profiles": [], "flags": [], "caches_loaded": []}
        calls = self.calls

        class Logger:
            WARNING, ERROR = 2, 1

            def __init__(self, level):
                pass

        class Config:
            def set_memory_pool_limit(self, pool, size):
                calls["workspace"] = size

            def set_flag(self, flag):
                calls["flags"].append(flag)

            def add_optimization_profile(self, profile):
                calls["profiles"].append(profile.shapes)
                return len(calls["profiles"]) - 1

            def create_timing_cache(self, data):
                calls["caches_loaded"].append(bytes(data))
                return types.SimpleNamespace(serialize=lambda: bytes(data) + b"+timings")

            def set_timing_cache(self, cache, ignore_mismatch):
                return True

        class Profile:
            def set_shape(self, name, lo, opt, hi):
                self.shapes = (name, tuple(lo), tuple(opt), tuple(hi))

        class Builder:
            platform_has_fast_fp16 = True

            def __init__(self, logger):
                pass

            def create_network(self, flags):
                return object()

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                return repr((calls["profiles"], calls["flags"])).encode()

        class OnnxParser:
            num_errors = 0

            def __init__(self, network, logger):
                pass

            def parse_from_file(self, path):
                calls["onnx"] = path
                return Path(path).is_file()

        self.Logger, self.Builder, self.OnnxParser = Logger, Builder, OnnxParser


def test_build_engine_drives_the_tensorrt_api(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    """The builder with a stand-in ``tensorrt``: profiles, FP16, plan, manifest, timing cache reuse."""
    from acfd.export.graph import export_model

    fake = _FakeTensorRT()
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    cache = tmp_path / "cache" / "timing.cache"
    manifest = export_model(
        tiny_checkpoint,
        tmp_path / "e",
        tensorrt=True,
        fp16=True,
        max_batch=4,
        progress=False,
        timing_cache=cache,
        verify=False,
    )
    want_profile = ("images", (1, 480, 640, 3), (1, 640, 860, 3), (4, 800, 1075, 3))
    assert fake.calls["onnx"] == str(tmp_path / "e" / "model.onnx")
    assert fake.calls["profiles"] == [want_profile] and fake.calls["flags"] == ["fp16"]
    assert fake.calls["workspace"] == 4096 << 20
    assert (tmp_path / "e" / "model.plan").read_bytes() == repr(([want_profile], ["fp16"])).encode()
    assert fake.calls["caches_loaded"] == [b""] and cache.read_bytes() == b"+timings"
    on_disk = json.loads((tmp_path / "e" / "export.json").read_text())
    assert on_disk["tensorrt"] == manifest.tensorrt
    assert manifest.tensorrt["file"] == "model.plan" and manifest.tensorrt["fp16"] is True
    assert manifest.tensorrt["max_batch"] == 4
    assert manifest.tensorrt["profiles"] == [
        {"input": "images", "min": [1, 480, 640, 3], "opt": [1, 640, 860, 3], "max": [4, 800, 1075, 3]}
    ]
    assert manifest.tensorrt["trtexec"].startswith("trtexec --onnx=")
    assert "trtexec --onnx=" in capsys.readouterr().out  # the equivalent command is printed

    profiles = optimization_profiles(InferenceConfig(), max_batch=4)
    build_engine(tmp_path / "e" / "model.onnx", tmp_path / "again.plan", profiles, timing_cache=cache)
    assert fake.calls["caches_loaded"][-1] == b"+timings"  # the first build's cache, read back
    assert "reusing TensorRT timing cache" in capsys.readouterr().out


def _run_engine(plan: bytes, images: np.ndarray) -> dict[str, np.ndarray]:
    """Run a serialized engine once on ``images`` with torch CUDA buffers."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
    context = engine.create_execution_context()
    stream = torch.cuda.Stream()
    shape = tuple(images.shape)
    for index in range(engine.num_optimization_profiles):
        lo, _, hi = engine.get_tensor_profile_shape("images", index)
        if all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
            context.set_optimization_profile_async(index, stream.cuda_stream)
            break
    else:
        raise AssertionError(f"no optimisation profile covers {shape}")
    inputs = torch.from_numpy(images).cuda().contiguous()
    context.set_input_shape("images", shape)
    context.set_tensor_address("images", inputs.data_ptr())
    outputs = {}
    for name in ("scores", "boxes"):
        outputs[name] = torch.empty(tuple(context.get_tensor_shape(name)), dtype=torch.float32, device="cuda")
        context.set_tensor_address(name, outputs[name].data_ptr())
    assert context.execute_async_v3(stream.cuda_stream)
    stream.synchronize()
    return {name: t.cpu().numpy() for name, t in outputs.items()}


@pytest.mark.skipif(not (HAVE_TENSORRT and HAVE_GPU), reason="needs TensorRT and a CUDA GPU (TensorRT engine build)")
@pytest.mark.parametrize("mode", ["one", "per-scale"])
def test_fp16_engine_matches_onnxruntime(tiny_checkpoint, tmp_path, mode, capsys):
    from acfd.export.graph import onnx_session

    out, cache = tmp_path / "e", tmp_path / "timing.cache"
    args = ["export", "--weights", str(tiny_checkpoint), "--out", str(out), "--quiet", "--tensorrt", "--fp16"]
    args += ["--max-batch", "2", "--trt-profiles", mode, "--timing-cache", str(cache)]
    assert acfd_main(args) == 0
    assert "trtexec --onnx=" in capsys.readouterr().out
    manifest = json.loads((out / "export.json").read_text())
    trt_info = manifest.tensorrt
    assert trt_info["file"] == "model.plan" and trt_info["fp16"] is True and trt_info["max_batch"] == 2
    assert len(trt_info["profiles"]) == (1 if mode == "one" else 4)
    assert cache.is_file() and cache.stat().st_size > 0
    plan = (out / "model.plan").read_bytes()
    session = onnx_session(out / "model.onnx")
    rng = np.random.default_rng(1)
    for h, w in manifest["test_scales"] + [manifest["single_scale"]]:
        images = rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)  # the graph takes uint8 NHWC pixels
        got = _run_engine(plan, images)
        scores, boxes = session.run(["scores", "boxes"], {"images": images})
        assert got["scores"].shape == scores.shape and got["boxes"].shape == boxes.shape
        # FP16 keeps ~3 significant digits per layer: scores within 1e-2, boxes within 1 px plus
        # 1% of their size, where the box fits in the image.
        np.testing.assert_allclose(got["scores"], scores, rtol=0, atol=1e-2)
        bw, bh = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
        meaningful = (bw <= w) & (bh <= h)
        size = np.maximum(bw, bh)[..., None]
        err = np.abs(got["boxes"] - boxes)
        assert (err <= 1.0 + 0.01 * size)[meaningful].all(), f"max box error {err[meaningful].max():.3f} px"

    # A second build (into another folder) reuses the timing cache written by the first.
    assert acfd_main([a if a != str(out) else str(tmp_path / "again") for a in args]) == 0
    assert "reusing TensorRT timing cache" in capsys.readouterr().out
