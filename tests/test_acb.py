"""ACB and ConvBN: train form vs deploy form, BN folding against torch's reference, hand-built kernels."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.fusion import fuse_conv_bn_weights

from acfd.training.model.acb import ACB, ConvBN, fold_bn


def _randomise_bns(module: nn.Module, generator: torch.Generator) -> None:
    for bn in module.modules():
        if isinstance(bn, nn.BatchNorm2d):
            c = bn.num_features
            bn.running_mean.copy_(torch.randn(c, generator=generator) * 0.5)
            bn.running_var.copy_(torch.rand(c, generator=generator) * 1.5 + 0.25)
            bn.weight.data.copy_(torch.randn(c, generator=generator) * 0.5 + 1.0)
            bn.bias.data.copy_(torch.randn(c, generator=generator) * 0.3)


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize(
    "kernel_size,stride,padding,size",
    [(3, 1, 1, (13, 17)), (3, 2, 1, (13, 17)), (3, 2, 1, (16, 16)), (3, 1, 2, (9, 11)), (5, 2, 2, (15, 12))],
)
def test_acb_fused_equals_train_form(kernel_size, stride, padding, size):
    g = torch.Generator().manual_seed(kernel_size * 100 + stride * 10 + padding)
    block = ACB(6, 10, kernel_size, stride, padding)
    for conv in (block.square, block.hor, block.ver):
        conv.weight.data.copy_(torch.randn(conv.weight.shape, generator=g) * 0.3)
    _randomise_bns(block, g)
    block.eval()
    x = torch.randn(2, 6, *size, generator=g)
    with torch.no_grad():
        expected = block(x)
        block.fuse()
        got = block(x)
    assert got.shape == expected.shape
    h, w = size
    assert got.shape[-2:] == (
        (h + 2 * padding - kernel_size) // stride + 1,
        (w + 2 * padding - kernel_size) // stride + 1,
    )
    assert _relative_error(got, expected) < 1e-4
    assert block.is_fused
    assert [m for m in block.modules() if isinstance(m, nn.Conv2d)] == [block.fused]
    assert block.fused.kernel_size == (kernel_size, kernel_size) and block.fused.bias is not None
    assert not any(isinstance(m, nn.BatchNorm2d) for m in block.modules())


def test_acb_branches_land_on_centre_row_and_column():
    # BatchNorms at their initial state are identity in eval mode; only the 1x3 and 3x1 kernels are set,
    # so the block must equal one 3x3 conv whose centre row / column hold those kernels.
    block = ACB(1, 1, 3).eval()
    block.square.weight.data.zero_()
    block.hor.weight.data.copy_(torch.tensor([1.0, 2.0, 3.0]).reshape(1, 1, 1, 3))
    block.ver.weight.data.copy_(torch.tensor([4.0, 5.0, 6.0]).reshape(1, 1, 3, 1))
    kernel = torch.tensor([[0.0, 4.0, 0.0], [1.0, 7.0, 3.0], [0.0, 6.0, 0.0]]).reshape(1, 1, 3, 3)
    x = torch.arange(30, dtype=torch.float32).reshape(1, 1, 5, 6)
    with torch.no_grad():
        expected = F.conv2d(x, kernel, padding=1)
        assert torch.allclose(block(x), expected)
        for stride in (1, 2):
            strided = ACB(1, 1, 3, stride=stride).eval()
            strided.load_state_dict(block.state_dict())
            assert torch.allclose(strided(x), F.conv2d(x, kernel, stride=stride, padding=1))
        weight, bias = block.fused_weight_bias()
    assert torch.allclose(weight, kernel) and torch.allclose(bias, torch.zeros(1))


def test_fold_bn_matches_torch_reference():
    g = torch.Generator().manual_seed(3)
    conv = nn.Conv2d(4, 5, 3, bias=False)
    bn = nn.BatchNorm2d(5, eps=1e-3)
    _randomise_bns(bn, g)
    weight, bias = fold_bn(conv.weight, None, bn)
    ref_w, ref_b = fuse_conv_bn_weights(conv.weight, None, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias)
    assert torch.allclose(weight, ref_w) and torch.allclose(bias, ref_b)


def test_convbn_fuse_equal_and_idempotent():
    g = torch.Generator().manual_seed(4)
    block = ConvBN(3, 8, kernel_size=3, stride=2, padding=1)
    _randomise_bns(block, g)
    block.eval()
    x = torch.randn(1, 3, 11, 9, generator=g)
    with torch.no_grad():
        expected = block(x)
        block.fuse()
        conv = block.conv
        block.fuse()  # second call is a no-op
        got = block(x)
    assert block.conv is conv and block.is_fused and block.bn is None
    assert got.shape == (1, 8, 6, 5)
    assert _relative_error(got, expected) < 1e-5


def test_acb_rejects_misaligned_padding_and_even_kernels():
    with pytest.raises(ValueError, match="padding"):
        ACB(2, 2, 3, padding=0)
    with pytest.raises(ValueError, match="odd"):
        ACB(2, 2, 4)


def test_acb_train_form_gradients_reach_all_branches():
    block = ACB(2, 3, 3).train()
    block(torch.randn(2, 2, 6, 6)).square().sum().backward()
    for name in ("square", "hor", "ver"):
        grad = getattr(block, name).weight.grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
