"""Asymmetric one-shot aggregation (AOSA) module, paper section 3.2 and Fig. 2.

``AOSA(in_channels, stage_channels, concat_channels, layers, residual)``::

    x -> [ACB-BN-ReLU at stage_channels] x layers   (in sequence; outputs y1..yn)
    z  = concat(x, y1, ..., yn)                      (in_channels + layers * stage_channels)
    z  = ReLU(BN(conv1x1(z)))                        (concat_channels)
    z  = z * hard_sigmoid(conv1x1_bias(avgpool(z)))  (eSE channel attention, VoVNetV2)
    out = z + x   if residual                        (identity; the stage asks for it on its 2nd and
                                                      later modules, where in == concat width)

Every module carries its eSE (Fig. 2 draws it in the module). Spatial size is kept.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from acfd.training.model.acb import ConvBN, acb_relu


class EffectiveSE(nn.Module):
    """eSE: global average pool -> 1x1 conv with bias -> hard-sigmoid -> channel-wise scale."""

    def __init__(self, channels: int):
        super().__init__()
        self.fc = nn.Conv2d(channels, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attention = F.hardsigmoid(self.fc(x.mean(dim=(2, 3), keepdim=True)))
        return x * attention


class AOSA(nn.Module):
    def __init__(
        self, in_channels: int, stage_channels: int, concat_channels: int, layers: int, residual: bool = False
    ):
        super().__init__()
        if residual and in_channels != concat_channels:
            raise ValueError(f"identity residual needs in == out width, got {in_channels} -> {concat_channels}")
        self.residual = residual
        self.layers = nn.ModuleList(
            acb_relu(in_channels if i == 0 else stage_channels, stage_channels) for i in range(layers)
        )
        self.aggregate = ConvBN(in_channels + layers * stage_channels, concat_channels, kernel_size=1)
        self.ese = EffectiveSE(concat_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [x]
        y = x
        for layer in self.layers:
            y = layer(y)
            outputs.append(y)
        z = F.relu(self.aggregate(torch.cat(outputs, dim=1)))
        z = self.ese(z)
        return z + x if self.residual else z
