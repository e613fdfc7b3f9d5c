"""Export: `acfd export` output, graph checks, ONNX Runtime parity with the train form, bad input.

One tiny checkpoint is exported once through the CLI (module fixture). Its BatchNorm statistics come
from a train-mode pass and are then perturbed, and its BN affine parameters are random, so folding
BN (and the ACB branches) into the convolutions is really exercised.

Parity tolerances: scores 1e-4 absolute; boxes 1e-2 px, compared where a box is meaningful, i.e. no
wider / taller than the input (an untrained network can decode boxes to 10^5 px, where float32
noise alone is far above 1e-2 px, and such boxes never survive post-processing). The BN statistics
are measured on the same kind of input as the test feeds, which keeps the network's outputs in a
trained network's range (|dx..dh| < 10). There, against a float64 run of the same train-form model,
PyTorch float32 is off by at most ~0.0035 px and ONNX Runtime by ~0.005 px (largest at the 512 px
anchors of stride 128, since a box's error is its anchor's side times the network's noise), so
1e-2 px holds with margin without being loosened.
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import acfd
from acfd.cli import main as acfd_main
from acfd.training.checkpoint import save_checkpoint
from acfd.training.config import load_preset
from acfd.inference import image_io
from acfd.export.graph import ExportError, onnx_session, trace_onnx, verify_onnx
from acfd.training.model import Predictor, build_model

STRIDES = (4, 8, 16, 32, 64, 128)
SCALES = [(640, 640), (480, 645), (640, 860), (800, 1075)]  # single scale + the paper's test scales


def random_pixels(batch: int, height: int, width: int, seed: int) -> np.ndarray:
    """Uniformly random uint8 RGB pixels ``[batch, height, width, 3]``: what the exported graph takes."""
    return np.random.default_rng(seed).integers(0, 256, (batch, height, width, 3), dtype=np.uint8)


def random_images(batch: int, height: int, width: int, seed: int) -> np.ndarray:
    """The same pixels normalised: the PyTorch network's input ``[batch, 3, height, width]``."""
    return np.stack([image_io.normalize(p) for p in random_pixels(batch, height, width, seed)])


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """BN statistics from one train-mode pass at 640 x 640, then perturbed; random BN affine.

    Statistics measured on the same kind of input the tests feed keep activations (and decoded
    boxes) in a trained network's range; the perturbation moves them off what the data gave, so
    the folded scale and shift differ per channel and from an identity.
    """
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # running stats = average of this pass's batch statistics
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(random_images(1, 640, 640, seed)))
        for bn in bns:
            c = bn.num_features
            bn.running_var.mul_(torch.empty(c).uniform_(1 / 1.5, 1.5, generator=g))
            bn.running_mean.add_(0.1 * bn.running_var.sqrt() * torch.randn(c, generator=g))
            bn.weight.copy_(torch.empty(c).uniform_(0.7, 1.3, generator=g))
            bn.bias.copy_(0.1 * torch.randn(c, generator=g))
            bn.momentum = 0.1
    return model.eval()


def expected_anchor_count(height: int, width: int) -> int:
    return sum(math.ceil(height / s) * math.ceil(width / s) for s in STRIDES)


def conv_calls(model: nn.Module) -> int:
    """How many convolutions one forward pass of ``model`` runs (shared head weights count per use)."""
    calls = []
    hooks = [m.register_forward_hook(lambda *_: calls.append(1)) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, 64, 64))
    for hook in hooks:
        hook.remove()
    return len(calls)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    preset = load_preset("tiny")
    model = randomize_bn(build_model(preset))
    root = tmp_path_factory.mktemp("export")
    weights = save_checkpoint(root / "run" / "last.pt", {"preset": preset.to_dict(), "model": model.state_dict()})
    out = root / "e"
    rc = acfd_main(["export", "--weights", str(weights), "--out", str(out), "--quiet"])
    assert rc == 0
    return {"model": model, "preset": preset, "weights": weights, "out": out}


@pytest.fixture(scope="module")
def session(exported):
    return onnx_session(exported["out"] / "model.onnx")


def test_cli_writes_model_and_manifest(exported):
    out = exported["out"]
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "model.int8.onnx", "model.onnx"]  # int8 by default
    assert not exported["model"].is_fused  # the caller's network is copied, not fused in place


def test_manifest_values(exported):
    manifest = json.loads((exported["out"] / "export.json").read_text())
    preset = exported["preset"]
    assert manifest["format_version"] == 2
    assert manifest["acfd_version"] == acfd.__version__
    assert manifest["preset"] == "tiny"
    assert manifest["preset_config"] == json.loads(json.dumps(preset.to_dict()))
    weights = exported["weights"]
    assert manifest["checkpoint"] == {
        "path": str(weights.resolve()),
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
    }
    assert manifest["onnx"]["file"] == "model.onnx"
    assert manifest["onnx"]["opset"] == 17
    assert manifest["onnx"]["input"] == "images"
    assert (manifest["onnx"]["input_dtype"], manifest["onnx"]["input_layout"]) == ("uint8", "NHWC")
    assert manifest["onnx"]["outputs"] == ["scores", "boxes"]
    assert set(manifest["onnx"]["output_meaning"]) == {"scores", "boxes"}
    assert manifest["normalization"] == {
        "channel_order": "RGB",
        "mean": [123.675, 116.28, 103.53],
        "std": [58.395, 57.12, 57.375],
        "pixel_range": [0, 255],
    }
    assert manifest["single_scale"] == [640, 640]
    assert manifest["test_scales"] == [[480, 645], [640, 860], [800, 1075]]
    assert manifest["strides"] == list(STRIDES)
    assert manifest["anchors_per_scale"]["640x640"] == 34125  # DESIGN.md: 34,125 anchors at 640 x 640
    assert manifest["anchors_per_scale"] == {f"{h}x{w}": expected_anchor_count(h, w) for h, w in SCALES}
    assert manifest["postprocess"] == {
        "score_threshold": 0.08,
        "pre_nms_topk": 1000,
        "nms_iou": 0.55,
        "max_detections": 100,
        "display_threshold": 0.5,
    }
    assert manifest["tensorrt"] is None
    assert (
        manifest["int8"]["file"] == "model.int8.onnx"
        and manifest["int8"]["calibration"]["source"] == "generated scenes"
    )


def test_graph_is_valid_fused_and_dynamic(exported):
    path = exported["out"] / "model.onnx"
    onnx.checker.check_model(str(path), full_check=True)
    graph = onnx.load(str(path)).graph
    ops = [node.op_type for node in graph.node]
    assert "BatchNormalization" not in ops and "Dropout" not in ops
    # Every ACB (3 convs) and conv+BN folded: the graph holds one Conv node per convolution call
    # of the deploy-form network, far fewer than the train form makes.
    deploy_calls = conv_calls(build_model("tiny").fuse())
    assert ops.count("Conv") == deploy_calls
    assert deploy_calls < conv_calls(exported["model"])
    dims = graph.input[0].type.tensor_type.shape.dim
    assert graph.input[0].name == "images"
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_param for d in dims] == ["batch", "height", "width", ""] and dims[3].dim_value == 3
    assert [o.name for o in graph.output] == ["scores", "boxes"]


@pytest.mark.parametrize("height,width", SCALES)
def test_onnxruntime_matches_train_form(exported, session, height, width):
    pixels = random_pixels(4, height, width, seed=height * 10_000 + width)
    images = random_images(4, height, width, seed=height * 10_000 + width)  # the same, normalised
    # The train form in eval mode handles every image independently, so one batch-4 reference
    # serves both the batch-4 and the batch-1 (first image) ONNX Runtime runs.
    with torch.no_grad():
        ref_scores, ref_boxes = (t.numpy() for t in Predictor(exported["model"]).eval()(torch.from_numpy(images)))
    count = expected_anchor_count(height, width)
    assert ref_scores.shape == (4, count)
    for batch in (4, 1):
        scores, boxes = session.run(["scores", "boxes"], {"images": pixels[:batch]})
        assert scores.shape == (batch, count) and boxes.shape == (batch, count, 4)
        assert scores.dtype == np.float32 and boxes.dtype == np.float32
        np.testing.assert_allclose(scores, ref_scores[:batch], rtol=0, atol=1e-4)
        ref = ref_boxes[:batch]
        w, h = ref[..., 2] - ref[..., 0], ref[..., 3] - ref[..., 1]
        meaningful = (w <= width) & (h <= height)
        assert meaningful.mean() > 0.9  # the comparison covers nearly every anchor
        err = np.abs(boxes - ref)
        assert np.isfinite(boxes[meaningful]).all()
        assert err[meaningful].max() <= 1e-2, f"max box error {err[meaningful].max():.4f} px"


def test_self_check_catches_a_size_frozen_by_tracing(tmp_path):
    class FrozenAnchors(nn.Module):
        """Right at the traced size only: int() turns the anchor count into a graph constant."""

        def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            count = expected_anchor_count(int(images.shape[1]), int(images.shape[2]))
            level = images.float().mean()
            scores = torch.sigmoid(level + torch.zeros(images.shape[0], count))
            return scores, level + torch.zeros(images.shape[0], count, 4)

    path = tmp_path / "frozen.onnx"
    trace_onnx(FrozenAnchors(), path, 17, example_shape=(2, 64, 96, 3))
    # 513 anchors at 64 x 96; 2244 + 561 + 153 + 45 + 15 + 6 = 3024 at 136 x 264
    with pytest.raises(
        ExportError, match=r"frozen.onnx: at input \[1, 136, 264, 3\] .* scores \[1, 513\] .* want \[1, 3024\]"
    ):
        verify_onnx(path, FrozenAnchors(), load_preset("tiny"), shape=(1, 136, 264, 3))


# ----------------------------------------------------------------------------------- bad input


def _export_cli(capsys, *args: str) -> tuple[int, list[str]]:
    rc = acfd_main(["export", *args, "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    return rc, err


def _assert_one_line(rc: int, lines: list[str], *needles: str) -> None:
    assert rc != 0
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_missing_checkpoint(tmp_path, capsys):
    missing = tmp_path / "nope.pt"
    rc, lines = _export_cli(capsys, "--weights", str(missing), "--out", str(tmp_path / "e"))
    _assert_one_line(rc, lines, str(missing), "no such checkpoint")
    assert not (tmp_path / "e" / "model.onnx").exists()


def test_random_bytes_checkpoint(tmp_path, capsys):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    rc, lines = _export_cli(capsys, "--weights", str(junk), "--out", str(tmp_path / "e"))
    _assert_one_line(rc, lines, str(junk), "not a readable checkpoint")


def test_truncated_checkpoint(exported, tmp_path, capsys):
    data = exported["weights"].read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    rc, lines = _export_cli(capsys, "--weights", str(cut), "--out", str(tmp_path / "e"))
    _assert_one_line(rc, lines, str(cut), "not a readable checkpoint")


def test_checkpoint_of_another_preset(exported, tmp_path, capsys):
    weights = str(exported["weights"])
    rc, lines = _export_cli(capsys, "--weights", weights, "--out", str(tmp_path / "e"), "--preset", "acfd51")
    _assert_one_line(rc, lines, weights, "'tiny'", "'acfd51'")


def test_foreign_torch_file(tmp_path, capsys):
    foreign = tmp_path / "resnet.pt"
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}}, foreign)
    rc, lines = _export_cli(capsys, "--weights", str(foreign), "--out", str(tmp_path / "e"))
    _assert_one_line(rc, lines, str(foreign), "not an ACFD checkpoint")


@pytest.mark.parametrize(
    "flags,needle",
    [
        (["--opset", "5"], "opset 5"),
        (["--fp16"], "--tensorrt"),
        (["--max-batch", "0"], "max batch 0"),
        (["--calibration", "/nonexistent/frames"], "--calibration /nonexistent/frames: no such folder"),
        (["--calibration-images", "0"], "--calibration-images 0: want at least 1"),
    ],
)
def test_bad_option(exported, tmp_path, capsys, flags, needle):
    rc, lines = _export_cli(capsys, "--weights", str(exported["weights"]), "--out", str(tmp_path / "e"), *flags)
    _assert_one_line(rc, lines, needle)


def test_output_folder_is_a_file(exported, tmp_path, capsys):
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder")
    rc, lines = _export_cli(capsys, "--weights", str(exported["weights"]), "--out", str(blocker))
    _assert_one_line(rc, lines, str(blocker))


def test_repository_publishes_the_display_threshold(exported, tmp_path):
    """The manifest's display threshold becomes the ensemble's config parameter that clients read."""
    import shutil

    from acfd.serving.repo import RepoError, build_repository

    export = tmp_path / "e"
    shutil.copytree(exported["out"], export)
    manifest = json.loads((export / "export.json").read_text())
    manifest["postprocess"]["display_threshold"] = 0.37
    (export / "export.json").write_text(json.dumps(manifest))
    repo = build_repository(export, tmp_path / "repo")
    text = (repo / "acfd" / "config.pbtxt").read_text()
    assert text.count('key: "display_threshold"') == 1 and 'string_value: "0.37"' in text
    manifest["postprocess"]["display_threshold"] = 7
    (export / "export.json").write_text(json.dumps(manifest))
    with pytest.raises(
        RepoError, match=r"export.json: postprocess.display_threshold: expected a number in \[0, 1\], got 7"
    ):
        build_repository(export, tmp_path / "repo2")
