"""Fusable convolutions: the asymmetric convolution block (ACB) and plain conv + BatchNorm.

Both blocks know their two forms (the habit of ACNet, Ding et al. 2019):

* **train form** - convolutions without bias, each followed by its own ``BatchNorm2d``.
  ``ACB`` runs a ``k x k``, a ``1 x k`` and a ``k x 1`` convolution over the same input and sums the
  three normalised outputs; ``ConvBN`` is one convolution and one BatchNorm.
* **deploy form** - after ``fuse()``: one ``k x k`` convolution with bias that gives the same output
  as the train form in eval mode. Each BatchNorm is folded into its convolution (paper eq. 4:
  ``a = gamma / sqrt(var + eps)``, ``W' = W a``, ``B' = (B - mu) a + beta``) and the ``1 x k`` /
  ``k x 1`` kernels are added into the centre row / column of the ``k x k`` kernel.

``fuse()`` works in place, uses the BatchNorm running statistics (so call it on a trained model in
eval mode), drops the branches and is idempotent. Neither block applies an activation: the
network writes ``ACB`` + ``ReLU`` where the paper says "ACB-BN-ReLU".

Alignment: with a ``k x k`` kernel and padding ``p`` (``p >= k // 2``), the ``1 x k`` branch is
padded ``(p - k // 2, p)`` and the ``k x 1`` branch ``(p, p - k // 2)``, so every output cell of a
branch sees the centre row / column of the window the square kernel sees, for any stride.
"""

from __future__ import annotations

import torch
from torch import nn


def fold_bn(weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of one convolution equal to ``bn(conv(x))`` in eval mode (paper eq. 4)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    conv_bias = bias if bias is not None else torch.zeros_like(bn.running_mean)
    return weight * scale.reshape(-1, 1, 1, 1), (conv_bias - bn.running_mean) * scale + bn.bias


def _deploy_conv(template: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor) -> nn.Conv2d:
    """A biased ``nn.Conv2d`` with ``template``'s geometry holding the given weight and bias."""
    conv = nn.Conv2d(
        template.in_channels,
        template.out_channels,
        template.kernel_size,
        stride=template.stride,
        padding=template.padding,
        dilation=template.dilation,
        groups=template.groups,
        bias=True,
        device=weight.device,
        dtype=weight.dtype,
    )
    conv.weight.data.copy_(weight.detach())
    conv.bias.data.copy_(bias.detach())
    return conv


class ConvBN(nn.Module):
    """``k x k`` convolution (no bias) + BatchNorm; ``fuse()`` folds the BN into a biased conv."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1, padding: int = 0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.bn: nn.BatchNorm2d | None = nn.BatchNorm2d(out_channels)

    @property
    def is_fused(self) -> bool:
        return self.bn is None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return x if self.bn is None else self.bn(x)

    @torch.no_grad()
    def fuse(self) -> "ConvBN":
        if self.bn is None:
            return self
        weight, bias = fold_bn(self.conv.weight, self.conv.bias, self.bn)
        self.conv = _deploy_conv(self.conv, weight, bias)
        self.bn = None
        return self


class ACB(nn.Module):
    """Asymmetric convolution block: ``BN(k x k) + BN(1 x k) + BN(k x 1)``; deploy form one conv."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, padding: int | None = None
    ):
        super().__init__()
        k = kernel_size
        if k < 3 or k % 2 == 0:
            raise ValueError(f"ACB kernel_size must be odd and >= 3, got {k}")
        p = k // 2 if padding is None else padding
        if p < k // 2:
            raise ValueError(f"ACB padding must be >= kernel_size // 2 = {k // 2} to align the branches, got {p}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = k, stride, p
        self.square = nn.Conv2d(in_channels, out_channels, (k, k), stride, (p, p), bias=False)
        self.square_bn = nn.BatchNorm2d(out_channels)
        self.hor = nn.Conv2d(in_channels, out_channels, (1, k), stride, (p - k // 2, p), bias=False)
        self.hor_bn = nn.BatchNorm2d(out_channels)
        self.ver = nn.Conv2d(in_channels, out_channels, (k, 1), stride, (p, p - k // 2), bias=False)
        self.ver_bn = nn.BatchNorm2d(out_channels)
        self.fused: nn.Conv2d | None = None

    @property
    def is_fused(self) -> bool:
        return self.fused is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            return self.fused(x)
        return self.square_bn(self.square(x)) + self.hor_bn(self.hor(x)) + self.ver_bn(self.ver(x))

    @torch.no_grad()
    def fused_weight_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Kernel ``[out, in, k, k]`` and bias ``[out]`` of the deploy form (from the train form)."""
        if self.fused is not None:
            return self.fused.weight.detach().clone(), self.fused.bias.detach().clone()
        c = self.kernel_size // 2
        weight, bias = fold_bn(self.square.weight, None, self.square_bn)
        hor_w, hor_b = fold_bn(self.hor.weight, None, self.hor_bn)
        ver_w, ver_b = fold_bn(self.ver.weight, None, self.ver_bn)
        weight = weight.clone()
        weight[:, :, c : c + 1, :] += hor_w
        weight[:, :, :, c : c + 1] += ver_w
        return weight, bias + hor_b + ver_b

    @torch.no_grad()
    def fuse(self) -> "ACB":
        if self.fused is not None:
            return self
        weight, bias = self.fused_weight_bias()
        self.fused = _deploy_conv(self.square, weight, bias)
        for name in ("square", "square_bn", "hor", "hor_bn", "ver", "ver_bn"):
            delattr(self, name)
        return self

    def extra_repr(self) -> str:
        form = "deploy" if self.fused is not None else "train"
        return (
            f"{self.in_channels}, {self.out_channels}, k={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, form={form}"
        )


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> nn.Sequential:
    """Plain ``k x k`` conv-BN-ReLU with ``'same'``-style padding ``k // 2``."""
    return nn.Sequential(
        ConvBN(in_channels, out_channels, kernel_size, stride, kernel_size // 2), nn.ReLU(inplace=True)
    )


def acb_relu(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> nn.Sequential:
    """The paper's "ACB-BN-ReLU" layer (the ACB carries its own BatchNorms)."""
    return nn.Sequential(ACB(in_channels, out_channels, kernel_size, stride), nn.ReLU(inplace=True))
