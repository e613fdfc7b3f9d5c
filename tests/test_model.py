"""The ACFD network: Table 1 shapes, anchor count/order vs outputs, fusion, gradients, `acfd info`."""

import argparse
import copy
import json
import math

import pytest
import torch
from torch import nn

from acfd.training import info
from acfd.inference.anchors import anchor_count, make_anchors
from acfd.inference.box_coder import BoxCoder
from acfd.training.model import ACB, ACFD, Predictor, build_model
from acfd.training.model.abifpn import FUSION_EPS, FusionNode
from acfd.training.model.aosa import AOSA
from acfd.training.model.head import DetectionHead, flatten_levels

STRIDES = (4, 8, 16, 32, 64, 128)


@pytest.fixture(scope="module")
def tiny() -> ACFD:
    """Eval-mode tiny model with BN statistics of a real pass (fresh statistics make eval outputs huge)."""
    torch.manual_seed(0)
    model = build_model("tiny")
    _calibrate(model, torch.randn(2, 3, 128, 128), seed=0)
    return model


def _calibrate(model: ACFD, x: torch.Tensor, seed: int) -> None:
    """Random BN affine parameters, running statistics taken from a train-mode pass (sane magnitudes)."""
    g = torch.Generator().manual_seed(seed)
    for bn in model.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.weight.data.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
            bn.bias.data.copy_(torch.randn(bn.num_features, generator=g) * 0.2)
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average: one pass sets the statistics
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()


def test_backbone_follows_table_1_at_640():
    with torch.device("meta"):
        model = build_model("acfd51")
        features = model.backbone(torch.zeros(1, 3, 640, 640))
    shapes = [tuple(f.shape[1:]) for f in features]
    assert shapes == [(256, 160, 160), (512, 80, 80), (768, 40, 40), (1024, 20, 20), (128, 10, 10), (128, 5, 5)]
    modules_per_stage = [sum(isinstance(m, AOSA) for m in stage) for stage in model.backbone.stages]
    assert modules_per_stage == [1, 1, 2, 2, 1, 1]
    residual = [[m.residual for m in stage if isinstance(m, AOSA)] for stage in model.backbone.stages]
    assert residual == [[False], [False], [False, True], [False, True], [False], [False]]
    assert all(len(m.layers) == 5 for m in model.modules() if isinstance(m, AOSA))
    pools = [isinstance(stage[0], nn.MaxPool2d) for stage in model.backbone.stages]
    assert pools == [False, True, True, True, True, True]


def test_aosa_parameter_count_by_hand():
    # ACB 4->2: 3 kernels 2*4*(9+3+3) = 120 + 3 BNs * 2 * 2 = 12; ACB 2->2: 60 + 12;
    # 1x1 (4 + 2 * 2 = 8) -> 6: 48 + BN 12; eSE 6x6 + bias 6 = 42.  Total 306.
    module = AOSA(4, 2, 6, layers=2)
    assert sum(p.numel() for p in module.parameters()) == 306
    assert module(torch.randn(1, 4, 5, 7)).shape == (1, 6, 5, 7)


def test_fast_normalised_fusion_by_hand():
    node = FusionNode(2, 3)
    node.conv = nn.Identity()
    a, b = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4)
    with torch.no_grad():
        node.weights.copy_(torch.tensor([1.0, 3.0]))
        assert torch.allclose(node((a, b)), (a + 3 * b) / (4 + FUSION_EPS))
        node.weights.copy_(torch.tensor([-1.0, 2.0]))  # negative weights are clipped to 0
        assert torch.allclose(node((a, b)), 2 * b / (2 + FUSION_EPS))


def test_output_shapes_and_prior_init(tiny):
    x = torch.randn(2, 3, 96, 160)
    with torch.no_grad():
        logits, deltas = tiny(x)
    a = anchor_count(96, 160, STRIDES)
    assert logits.shape == (2, a) and deltas.shape == (2, a, 4)
    assert tiny.anchors(96, 160).shape == (a, 4)
    assert tiny.head.cls_out.bias.item() == pytest.approx(-math.log(99.0))
    trained_stats = copy.deepcopy(tiny).train()  # BN on batch statistics, as at the first training step
    with torch.no_grad():
        start_logits, _ = trained_stats(x)
    assert start_logits.mean().item() == pytest.approx(-math.log(99.0), abs=0.5)


def test_flattening_follows_anchor_order():
    # Level maps whose values are the cell centres: flattened, they must equal the anchors' centres.
    sizes = [(3, 5), (2, 3), (1, 2)]
    strides = (4, 8, 16)
    cls, reg = [], []
    for (h, w), s in zip(sizes, strides):
        cy, cx = torch.meshgrid((torch.arange(h) + 0.5) * s, (torch.arange(w) + 0.5) * s, indexing="ij")
        cls.append(cx[None, None])
        reg.append(torch.stack([cx, cy, cx * 0 + s, cy * 0 - s])[None])
    logits, deltas = flatten_levels(cls, reg)
    anchors = make_anchors(12, 20, strides)
    centre_x = (anchors[:, 0] + anchors[:, 2]) / 2
    centre_y = (anchors[:, 1] + anchors[:, 3]) / 2
    assert torch.equal(logits[0], centre_x)
    assert torch.equal(deltas[0, :, 0], centre_x) and torch.equal(deltas[0, :, 1], centre_y)
    assert torch.equal(deltas[0, :, 2], (anchors[:, 2] - anchors[:, 0]) / 4)


@pytest.mark.parametrize("hw", [(640, 640), (480, 645), (640, 860), (800, 1075)])
def test_predictor_anchors_match_outputs_at_paper_scales(tiny, hw):
    # Zero regression output: decoded boxes are the anchors themselves, in anchors.py's order.
    # (Deploy form: the count and order do not depend on the form, and it runs faster.)
    model = copy.deepcopy(tiny).fuse()
    nn.init.zeros_(model.head.reg_out.weight)
    nn.init.zeros_(model.head.reg_out.bias)
    h, w = hw
    with torch.no_grad():
        scores, boxes = Predictor(model)(torch.randn(1, 3, h, w))
    expected = sum(math.ceil(h / s) * math.ceil(w / s) for s in STRIDES)
    assert scores.shape == (1, expected) and boxes.shape == (1, expected, 4)
    if hw == (640, 640):
        assert expected == 34125
    assert torch.allclose(boxes[0], make_anchors(h, w, STRIDES), atol=1e-3)
    assert torch.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()


def test_predictor_scores_are_sigmoid_of_logits(tiny):
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        logits, deltas = tiny(x)
        scores, boxes = Predictor(tiny)(x)
    assert torch.allclose(scores, torch.sigmoid(logits))
    assert torch.allclose(boxes, BoxCoder().decode(deltas, tiny.anchors(64, 96)))


@pytest.mark.parametrize("preset,shape", [("tiny", (2, 3, 96, 160)), ("acfd51", (1, 3, 128, 128))])
def test_whole_model_equal_before_and_after_fuse(preset, shape):
    # float64: fusion is exact algebra, and fp32 rounding through 50+ layers would hide a small error.
    torch.manual_seed(1)
    model = build_model(preset).double()
    _calibrate(model, torch.randn(2, 3, 64, 64, dtype=torch.float64), seed=2)
    x = torch.randn(*shape, dtype=torch.float64)
    with torch.no_grad():
        logits, deltas = model(x)
        train_params = sum(p.numel() for p in model.parameters())
        assert model.fuse() is model
        fused_logits, fused_deltas = model(x)
    for got, expected in ((fused_logits, logits), (fused_deltas, deltas)):
        assert float((got - expected).abs().max() / expected.abs().max()) < 1e-6
    assert model.is_fused and not model.training
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    kernels = {m.kernel_size for m in model.modules() if isinstance(m, nn.Conv2d)}
    assert (1, 3) not in kernels and (3, 1) not in kernels
    assert all(m.is_fused for m in model.modules() if isinstance(m, ACB))
    fused_params = sum(p.numel() for p in model.parameters())
    assert fused_params < train_params
    with torch.no_grad():
        model.fuse()  # idempotent
        again_logits, _ = model(x)
    assert sum(p.numel() for p in model.parameters()) == fused_params
    assert torch.equal(again_logits, fused_logits)


def test_head_shares_kernels_but_normalises_each_level_on_its_own():
    # Levels with very different statistics: a BatchNorm shared by the levels would normalise each
    # with its own batch statistics in train mode but with a blend of all of them in eval mode.
    torch.manual_seed(4)
    head = DetectionHead(8, 8, depth=2, levels=3)
    for m in head.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # cumulative average: one pass sets the statistics
    features = [torch.randn(4, 8, 32, 32) * 3.0**i + 2.0 * i for i in range(3)]
    with torch.no_grad():
        train_cls, train_reg = head.train()(features)
        eval_cls, eval_reg = head.eval()(features)
    for got, expected in zip(eval_cls + eval_reg, train_cls + train_reg):
        # running_var is the unbiased variance (n = 4096 values): agreement to ~1e-3, not exactly
        assert float((got - expected).abs().max() / expected.abs().max()) < 1e-2
    for branch in (head.cls_branch, head.reg_branch):
        for per_level in branch.layers:
            assert len(per_level) == 3
            assert all(acb.square is per_level[0].square and acb.hor is per_level[0].hor for acb in per_level)
            assert len({id(acb.square_bn) for acb in per_level}) == 3
            means = [acb.square_bn.running_mean for acb in per_level]
            assert not torch.allclose(means[0], means[2])
    # parameters / state_dict hold each shared kernel once: 2 branches x 2 layers x 3 kernels + 2 outputs
    assert sum(isinstance(m, nn.Conv2d) for m in head.modules()) == 14
    assert sum(k.endswith(".square.weight") for k in head.state_dict()) == 4


def test_backward_gives_finite_gradients_everywhere():
    torch.manual_seed(3)
    model = build_model("tiny").train()
    logits, deltas = model(torch.randn(2, 3, 96, 128))
    loss = nn.functional.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits)) + deltas.pow(2).mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert model.head.cls_out.bias.grad.abs().item() > 0


def _info(capsys, *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    info.add_arguments(parser)
    code = info.run(parser.parse_args(list(argv)))
    out, err = capsys.readouterr()
    return code, out, err


def test_info_json_for_the_paper_model(capsys):
    code, out, _ = _info(capsys, "--preset", "acfd51", "--input", "640x640", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["preset"] == "acfd51" and report["input"] == [640, 640]
    assert report["anchors"] == 34125
    assert report["strides"] == [4, 8, 16, 32, 64, 128]
    assert report["anchor_sides"] == [16, 32, 64, 128, 256, 512]
    assert report["size_mb"] < 200
    fused = report["fused"]
    assert fused["params"] < report["params"] and fused["size_mb"] < report["size_mb"]
    assert 0 < fused["gflops"] < report["gflops"]


def test_info_gflops_agree_with_a_direct_count():
    report = info.describe("tiny", 96, 160)
    train_model = build_model("tiny").eval()
    assert report["params"] == sum(p.numel() for p in train_model.parameters())
    assert report["gflops"] == pytest.approx(info.count_gflops(train_model, 96, 160), abs=1e-3)
    assert report["fused"]["gflops"] == pytest.approx(info.count_gflops(train_model.fuse(), 96, 160), abs=1e-3)
    # by hand: ACB 4->8, stride 2, 10x10 -> 5x5: 25 outputs * 8 channels * 4 inputs * (9 + 3 + 3) MACs
    assert info.count_gflops(nn.Sequential(ACB(3, 4, 3), ACB(4, 8, 3, stride=2)), 10, 10) == pytest.approx(
        2 * (100 * 4 * 3 * 15 + 25 * 8 * 4 * 15) / 1e9
    )


@pytest.mark.parametrize("argv", [("--input", "64x"), ("--input", "0x5"), ("--input", "axb"), ("--preset", "nope")])
def test_info_rejects_bad_arguments_in_one_line(capsys, argv):
    code, out, err = _info(capsys, *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and argv[1] in err


def test_info_table(capsys):
    code, out, _ = _info(capsys, "--preset", "tiny", "--input", "480x645")
    assert code == 0
    assert "25957" in out and "fused" in out and "train" in out
