"""MBC focal loss (acfd.kernels.mbc_loss): hand-computed values, gradcheck of the reference, and the
Triton kernels (through the interpreter on CPU) against the reference, values and gradients."""

import math
import os

import pytest
import torch
import torch.nn.functional as F

from acfd.kernels.mbc_loss import mbc_focal_loss
from acfd.kernels.mbc_loss.reference import mbc_focal_loss_reference

HAS_TRITON_PATH = torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"
needs_triton = pytest.mark.skipif(not HAS_TRITON_PATH, reason="needs CUDA or TRITON_INTERPRET=1 (tests/conftest.py)")
IMPLS = ["torch", pytest.param("triton", marks=needs_triton)]


def _focal_by_hand(x: float, label: int, m=0.2, a=0.25, g=2.0) -> float:
    """Eq. (3) then the sigmoid focal loss, written from the paper's formulas with ``math``."""
    if label in (1, 2):
        p = 1 / (1 + math.exp(-(x - m)))
        return -a * (1 - p) ** g * math.log(p)
    p = 1 / (1 + math.exp(-x))
    return -(1 - a) * p**g * math.log(1 - p)


def _loss_and_grad(logits, labels, impl, **kw):
    x = logits.clone().requires_grad_(True)
    loss = mbc_focal_loss(x, labels, impl=impl, **kw)
    loss.backward()
    return loss.detach(), x.grad


@pytest.mark.parametrize("impl", IMPLS)
def test_hand_computed_loss(impl):
    xs, ls = [0.0, 2.0, -1.0, 3.0, -4.0], [0, 1, 2, 1, 2]
    loss = mbc_focal_loss(torch.tensor([xs]), torch.tensor([ls]), impl=impl)
    psi1 = sum(_focal_by_hand(x, label) for x, label in zip(xs, ls) if label != 2)
    psi2 = sum(_focal_by_hand(x, label) for x, label in zip(xs, ls) if label == 2)
    expected = psi1 / 2 + 0.7 * psi2 / 2  # N1 = 2, N2 = 2
    assert loss.dtype == torch.float32 and loss.shape == ()
    assert loss.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("impl", IMPLS)
def test_n1_and_n2_zero_are_guarded(impl):
    xs = [0.5, -0.5, 1.5]
    negatives = sum(_focal_by_hand(x, 0) for x in xs)
    loss = mbc_focal_loss(torch.tensor([xs]), torch.tensor([[0, 0, 0]]), impl=impl)
    assert loss.item() == pytest.approx(negatives, rel=1e-6)  # N1 = N2 = 0: divided by 1
    loss = mbc_focal_loss(torch.tensor([xs]), torch.tensor([[0, 2, 0]]), impl=impl)
    expected = (_focal_by_hand(0.5, 0) + _focal_by_hand(1.5, 0)) + 0.7 * _focal_by_hand(-0.5, 2)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("impl", IMPLS)
def test_without_focusing_and_margin_it_is_weighted_bce(impl):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 50, generator=gen) * 3
    labels = (torch.rand(2, 50, generator=gen) < 0.3).long()
    loss = mbc_focal_loss(logits, labels, margin=0.0, alpha=0.5, gamma=0.0, impl=impl)
    bce = F.binary_cross_entropy_with_logits(logits, labels.float(), reduction="sum")
    torch.testing.assert_close(loss, 0.5 * bce / labels.sum(), rtol=1e-5, atol=0)


def test_margin_is_taken_off_the_positive_logit():
    x = torch.tensor([[1.3, 0.4]])
    with_margin = mbc_focal_loss(x, torch.tensor([[1, 0]]), margin=0.2)
    shifted = mbc_focal_loss(x - torch.tensor([[0.2, 0.0]]), torch.tensor([[1, 0]]), margin=0.0)
    torch.testing.assert_close(with_margin, shifted)


def test_gradcheck_reference_float64():
    gen = torch.Generator().manual_seed(1)
    logits = (torch.randn(3, 17, generator=gen, dtype=torch.float64) * 3).requires_grad_(True)
    labels = torch.randint(0, 3, (3, 17), generator=gen)
    assert torch.autograd.gradcheck(lambda x: mbc_focal_loss_reference(x, labels), (logits,))
    assert torch.autograd.gradcheck(lambda x: mbc_focal_loss_reference(x, labels, gamma=1.5, margin=0.5), (logits,))


# ---------------------------------------------------------------- kernel vs reference


def _random_case(seed, shape, dtype, probs=(0.9, 0.07, 0.03), scale=4.0):
    gen = torch.Generator().manual_seed(seed)
    logits = (torch.randn(shape, generator=gen) * scale).to(dtype)
    labels = torch.multinomial(torch.tensor(probs), math.prod(shape), replacement=True, generator=gen).view(shape)
    return logits, labels


def _compare(logits, labels, **kw):
    ref_loss, ref_grad = _loss_and_grad(logits, labels, "torch", **kw)
    got_loss, got_grad = _loss_and_grad(logits, labels, "triton", **kw)
    assert got_loss.dtype == torch.float32 and got_grad.dtype == logits.dtype
    torch.testing.assert_close(got_loss, ref_loss, rtol=1e-5, atol=1e-7)
    # fp32: within 1e-5 (relative); fp16 / bf16 gradients: the same fp32 values rounded once to the
    # logits' dtype, so at most one unit in the last place of that dtype apart
    rtol = {torch.float32: 1e-5, torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7}[logits.dtype]
    torch.testing.assert_close(got_grad.float(), ref_grad.float(), rtol=rtol, atol=1e-7)


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(3, 1000), (2, 2500)])
def test_kernel_matches_reference(dtype, shape):
    logits, labels = _random_case(sum(shape), shape, dtype)
    _compare(logits, labels)


@needs_triton
@pytest.mark.parametrize(
    "probs",
    [(1.0, 0.0, 0.0), (0.9, 0.0, 0.1), (0.9, 0.1, 0.0), (0.0, 0.0, 1.0), (0.0, 1.0, 0.0)],
    ids=["all-negative", "no-psi1", "no-psi2", "all-psi2", "all-psi1"],
)
def test_kernel_label_edge_cases(probs):
    logits, labels = _random_case(7, (2, 300), torch.float32, probs)
    _compare(logits, labels)


@needs_triton
def test_kernel_other_hyper_parameters_and_tiny_input():
    logits, labels = _random_case(8, (4, 129), torch.float32)
    _compare(logits, labels, margin=0.5, alpha=0.4, gamma=1.5, lambda_cls=1.0)
    _compare(logits, labels, gamma=0.0)
    _compare(torch.tensor([[0.3]]), torch.tensor([[2]]))


@needs_triton
def test_kernel_extreme_logits_stay_finite():
    logits = torch.tensor([[-200.0, -60.0, -20.0, 0.0, 20.0, 60.0, 200.0] * 3])
    labels = torch.tensor([[0] * 7 + [1] * 7 + [2] * 7])
    _compare(logits, labels)
    loss, grad = _loss_and_grad(logits, labels, "triton")
    assert torch.isfinite(loss) and torch.isfinite(grad).all()


@needs_triton
def test_kernel_many_blocks_reduce_in_order(monkeypatch):
    from acfd.kernels.mbc_loss import triton_kernel

    monkeypatch.setattr(triton_kernel, "BLOCK", 64)  # 63 partials, reduced 4 at a time
    monkeypatch.setattr(triton_kernel, "FINAL_BLOCK", 4)
    logits, labels = _random_case(9, (2, 2000), torch.float32)
    _compare(logits, labels)


@needs_triton
def test_kernel_labels_of_other_integer_dtypes_and_upstream_gradient():
    logits, labels = _random_case(10, (2, 700), torch.bfloat16)
    for label_dtype in (torch.int32, torch.uint8):
        _compare(logits, labels.to(label_dtype))
    x_ref = logits.float().clone().requires_grad_(True)
    x_got = logits.float().clone().requires_grad_(True)
    (3 * mbc_focal_loss(x_ref, labels, impl="torch") - mbc_focal_loss(x_ref, labels, impl="torch")).backward()
    (3 * mbc_focal_loss(x_got, labels, impl="triton") - mbc_focal_loss(x_got, labels, impl="triton")).backward()
    torch.testing.assert_close(x_got.grad, x_ref.grad, rtol=1e-5, atol=1e-7)


def test_auto_uses_the_reference_on_cpu(monkeypatch):
    from acfd.kernels.mbc_loss import triton_kernel

    def forbidden(*args, **kwargs):
        raise AssertionError("the Triton path must not run for CPU tensors under impl='auto'")

    monkeypatch.setattr(triton_kernel, "mbc_focal_loss_triton", forbidden)
    logits, labels = _random_case(11, (2, 10), torch.float32)
    torch.testing.assert_close(mbc_focal_loss(logits, labels), mbc_focal_loss_reference(logits, labels))


def test_bad_inputs_are_clear_value_errors():
    x, y = torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long)
    cases = [
        ((x.long(), y), {}, "logits must be"),
        ((x, y.float()), {}, "labels must be an integer"),
        ((x, y.bool()), {}, "labels must be an integer"),
        ((x, y[:, :2]), {}, r"\[B, A\]"),
        ((x.flatten(), y.flatten()), {}, r"\[B, A\]"),
        ((x, y), {"impl": "cuda"}, "impl must be one of"),
        ((x, y), {"gamma": -1.0}, "gamma"),
        ((x, y), {"margin": float("inf")}, "margin"),
        ((x.double(), y), {"impl": "triton"}, "fp32, fp16 or bf16"),
    ]
    for args, kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            mbc_focal_loss(*args, **kwargs)
