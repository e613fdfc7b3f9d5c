"""Loss assembly (eq. 1-3) on hand-built anchors, with expected values worked out by hand."""

import math

import pytest
import torch

from acfd.inference.box_coder import BoxCoder
from acfd.training.config import TrainConfig
from acfd.training.loss import DetectionLoss, regression_loss

CFG = TrainConfig()  # paper values: t1 0.35, t2 0.7, lambda 0.7 / 0.7, margin 0.2, alpha 0.25, gamma 2

ANCHORS = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0], [40.0, 40.0, 50.0, 50.0]])
GT = torch.tensor([[[0.0, 0.0, 10.0, 10.0]], [[0.0, 0.0, 0.0, 0.0]]])  # image 1 has no faces (padding row)
COUNT = torch.tensor([1, 0])
# image 0: anchor 0 overlaps the face exactly (psi1). Anchor 1 does not overlap it, but its deltas
# regress it onto (0.3, 0, 10.3, 10): IoU 9.7 / 10.3 = 0.94 > T2, so it is compensated (psi2).
# encode(face, anchor 1) = (-20, -20, 0, 0); the deltas are off by 0.15 in dx. Anchor 2: negative.
DELTAS = torch.tensor(
    [
        [[0.5, 0.0, 0.0, -2.0], [-19.85, -20.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]],
        [[0.1, 0.2, 0.3, 0.4], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]],
    ]
)
LOGITS = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 0.0, 1.0]])


def focal(x: float, positive: bool, margin=0.2, alpha=0.25, gamma=2.0) -> float:
    """Sigmoid focal loss of one margin logit, written out with math (independent of the kernels)."""
    z = x - margin if positive else x
    p = 1.0 / (1.0 + math.exp(-z))
    p_t = p if positive else 1.0 - p
    a_t = alpha if positive else 1.0 - alpha
    return -a_t * (1.0 - p_t) ** gamma * math.log(p_t)


def smooth_l1(d: float) -> float:
    return 0.5 * d * d if abs(d) < 1.0 else abs(d) - 0.5


def test_hand_computed_total():
    loss = DetectionLoss(CFG, kernels="torch")(LOGITS, DELTAS, ANCHORS, GT, COUNT)
    assert (loss.n1, loss.n2) == (1, 1)
    # psi1: anchor 0, target (0,0,0,0); psi2: anchor 1, off by 0.15 in dx only
    reg1 = smooth_l1(0.5) + smooth_l1(-2.0)  # 0.125 + 1.5
    reg2 = smooth_l1(0.15)
    expected_reg = reg1 / 1 + 0.7 * reg2 / 1
    assert float(loss.reg) == pytest.approx(expected_reg, rel=1e-5)
    assert expected_reg == pytest.approx(1.632875)
    # cls: every anchor not in psi2 over N1 (= 1), psi2 weighted 0.7 over N2 (= 1)
    rest = focal(2.0, True) + focal(0.5, False) + focal(-3.0, False) + focal(0.0, False) + focal(1.0, False)
    expected_cls = rest / 1 + 0.7 * focal(-1.0, True) / 1
    assert float(loss.cls) == pytest.approx(expected_cls, rel=1e-5)
    assert float(loss.total) == pytest.approx(expected_cls + expected_reg, rel=1e-5)


def test_gradient_only_on_matched_regressions():
    deltas = DELTAS.clone().requires_grad_(True)
    logits = LOGITS.clone().requires_grad_(True)
    DetectionLoss(CFG, kernels="torch")(logits, deltas, ANCHORS, GT, COUNT).total.backward()
    assert torch.count_nonzero(deltas.grad[0, 0]) == 2  # dx (0.5) and dh (-2); dy = dw = 0 exactly
    assert deltas.grad[0, 0, 3] == pytest.approx(-1.0)  # d|x|/dx of the linear part, over N1 = 1
    assert deltas.grad[0, 1, 0] == pytest.approx(0.7 * 0.15, rel=1e-4)
    assert torch.all(deltas.grad[0, 2] == 0) and torch.all(deltas.grad[1] == 0)  # negatives
    assert torch.all(logits.grad != 0)


def test_no_faces_anywhere_is_finite():
    gt = torch.zeros(2, 0, 4)
    deltas = DELTAS.clone().requires_grad_(True)
    loss = DetectionLoss(CFG, kernels="torch")(LOGITS, deltas, ANCHORS, gt, torch.tensor([0, 0]))
    assert (loss.n1, loss.n2) == (0, 0)
    assert float(loss.reg) == 0.0
    expected_cls = sum(focal(x, False) for x in LOGITS.flatten().tolist())  # over max(N1, 1) = 1
    assert float(loss.cls) == pytest.approx(expected_cls, rel=1e-5)
    loss.total.backward()
    assert torch.all(deltas.grad == 0)


def test_regression_normalised_over_the_whole_batch():
    deltas = torch.zeros(2, 2, 4)
    targets = torch.zeros(2, 2, 4)
    targets[0, 0, 0] = 0.4  # psi1, image 0: 0.08
    targets[1, 1, 1] = 3.0  # psi1, image 1: 2.5
    targets[1, 0, 2] = 0.2  # psi2: 0.02
    labels = torch.tensor([[1, 0], [2, 1]])
    reg, n1, n2 = regression_loss(deltas, targets, labels, lambda_reg=0.7)
    assert (n1, n2) == (2, 1)
    assert float(reg) == pytest.approx((0.08 + 2.5) / 2 + 0.7 * 0.02 / 1)


def test_targets_use_the_box_coder():
    coder = BoxCoder()
    face = torch.tensor([[[2.0, 1.0, 11.0, 12.0]]])
    deltas = torch.zeros(1, 3, 4)
    loss = DetectionLoss(CFG, kernels="torch")(torch.zeros(1, 3), deltas, ANCHORS, face, torch.tensor([1]))
    expected = coder.encode(face[0, 0], ANCHORS[0])  # IoU(anchor 0, face) = 72 / 127 >= T1
    assert loss.n1 == 1 and loss.n2 == 0
    assert float(loss.reg) == pytest.approx(sum(smooth_l1(v) for v in expected.tolist()), rel=1e-5)


def test_unknown_kernel_choice():
    with pytest.raises(ValueError, match="kernels"):
        DetectionLoss(CFG, kernels="cuda")


def test_triton_kernels_give_the_same_loss():
    pytest.importorskip("triton")
    import os

    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("Triton kernels need CUDA or TRITON_INTERPRET=1")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    args = [t.to(device) for t in (LOGITS, DELTAS, ANCHORS, GT, COUNT)]
    ref = DetectionLoss(CFG, kernels="torch")(*args)
    tri = DetectionLoss(CFG, kernels="triton")(*args)
    assert (tri.n1, tri.n2) == (ref.n1, ref.n2)
    assert float(tri.total) == pytest.approx(float(ref.total), rel=1e-5)
