"""ABi-FPN neck (paper section 3.3): BiFPN (Tan et al. 2020) with ACBs in place of its convolutions.

Contract: ``ABiFPN(in_channels, channels, repeats)(features) -> features'`` where ``features`` is a
list of ``L`` maps (stride 4 first) and every output has ``channels`` channels and the same spatial
size as the matching input.

Layout (our defaults and reading of the paper, where it leaves details open):

* **Laterals**, once: a 1x1 conv + BN (no activation) per level, backbone width -> neck width
  (``ModelConfig.neck_channels``, 128 for acfd51).
* **One BiFPN layer** (repeated ``ModelConfig.neck_repeats`` times, 2 for acfd51), levels
  ``P0..P{L-1}``::

      top-down   T{L-1} = P{L-1}
                 Ti     = node(Pi, up(T{i+1}))                    i = L-2 .. 0
      bottom-up  O0     = T0
                 Oi     = node(Pi, Ti, down(O{i-1}))              i = 1 .. L-2
                 O{L-1} = node(P{L-1}, down(O{L-2}))

  ``node`` is fast normalised fusion, ``sum_j w_j x_j / (sum_j w_j + 1e-4)`` with ``w = ReLU(learned)``
  (initialised to 1), followed by ACB-BN-ReLU at neck width where BiFPN has its depthwise-separable
  convolution (a full 3x3 ACB: the paper replaces BiFPN's convolutions with ACBs).
* ``up`` is nearest-neighbour ``F.interpolate`` to the exact size of the finer level (levels are
  ``ceil(H / s)``, not always twice the coarser one); ``down`` is a 3x3 / stride-2 / padding-1
  max-pool, which lands exactly on the coarser level's size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from acfd.training.model.acb import ConvBN, acb_relu

FUSION_EPS = 1e-4


class FusionNode(nn.Module):
    """Fast normalised weighted sum of same-shaped inputs, then ACB-BN-ReLU."""

    def __init__(self, num_inputs: int, channels: int):
        super().__init__()
        self.weights = nn.Parameter(torch.ones(num_inputs))
        self.conv = acb_relu(channels, channels)

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        w = F.relu(self.weights)
        w = w / (w.sum() + FUSION_EPS)
        fused = inputs[0] * w[0]
        for i in range(1, len(inputs)):
            fused = fused + inputs[i] * w[i]
        return self.conv(fused)


class BiFPNLayer(nn.Module):
    def __init__(self, levels: int, channels: int):
        super().__init__()
        if levels < 2:
            raise ValueError(f"BiFPN needs at least 2 levels, got {levels}")
        self.levels = levels
        self.top_down = nn.ModuleList(FusionNode(2, channels) for _ in range(levels - 1))  # for levels 0..L-2
        self.bottom_up = nn.ModuleList(
            FusionNode(3 if i < levels - 1 else 2, channels) for i in range(1, levels)
        )  # for levels 1..L-1
        self.down = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        n = self.levels
        td: list[torch.Tensor] = [features[-1]] * n
        for i in range(n - 2, -1, -1):
            up = F.interpolate(td[i + 1], size=features[i].shape[-2:], mode="nearest")
            td[i] = self.top_down[i]((features[i], up))
        out = [td[0]]
        for i in range(1, n):
            down = self.down(out[i - 1])
            inputs = (features[i], td[i], down) if i < n - 1 else (features[i], down)
            out.append(self.bottom_up[i - 1](inputs))
        return out


class ABiFPN(nn.Module):
    def __init__(self, in_channels: Sequence[int], channels: int, repeats: int):
        super().__init__()
        if repeats < 1:
            raise ValueError(f"neck_repeats must be >= 1, got {repeats}")
        self.laterals = nn.ModuleList(ConvBN(c, channels, kernel_size=1) for c in in_channels)
        self.layers = nn.ModuleList(BiFPNLayer(len(in_channels), channels) for _ in range(repeats))
        self.out_channels = channels

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        x = [lateral(f) for lateral, f in zip(self.laterals, features)]
        for layer in self.layers:
            x = layer(x)
        return x
