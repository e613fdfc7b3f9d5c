"""VoVNetV3 backbone (paper section 3.2, Table 1): stem + six AOSA stages, strides 4 to 128.

Shapes come from ``ModelConfig`` (defaults = VoVNetV3-51 of Table 1)::

    stem   conv1 3x3 s2 -> conv2 3x3 s1 -> conv3 3x3 s2      plain conv-BN-ReLU, stem_channels
    stage1 AOSA x stage_repeats[0]                           stride 4
    stage k (k = 2..6): max-pool 3x3 s2 p1, AOSA x repeats   stride 2 ** (k + 1)

Stage ``k`` modules run ``layers_per_module`` ACB-BN-ReLU layers at ``stage_channels[k]`` and
aggregate to ``concat_channels[k]``; the 2nd and later modules of a stage add an identity residual.
Every downsampling is 3x3 / stride 2 / padding 1, so the stage of stride ``s`` has
``ceil(H / s) x ceil(W / s)`` cells for any input size (e.g. 480 x 645).

``forward(x) -> list`` of the six stage outputs, stride 4 first.
"""

from __future__ import annotations

import torch
from torch import nn

from acfd.training.config import ModelConfig
from acfd.training.model.acb import conv_bn_relu
from acfd.training.model.aosa import AOSA


def _stage(
    in_channels: int, stage_channels: int, concat_channels: int, repeats: int, layers: int, pool: bool
) -> nn.Sequential:
    modules: list[nn.Module] = [nn.MaxPool2d(kernel_size=3, stride=2, padding=1)] if pool else []
    for i in range(repeats):
        modules.append(
            AOSA(in_channels if i == 0 else concat_channels, stage_channels, concat_channels, layers, residual=i > 0)
        )
    return nn.Sequential(*modules)


class VoVNetV3(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        n = len(config.stage_channels)
        if not (len(config.concat_channels) == len(config.stage_repeats) == len(config.strides) == n):
            raise ValueError(
                "model config: stage_channels, concat_channels, stage_repeats and strides must have one entry per stage"
            )
        if len(config.stem_channels) != 3:
            raise ValueError(f"model config: stem_channels needs 3 widths (conv1..conv3), got {config.stem_channels}")
        expected = tuple(4 * 2**i for i in range(n))
        if tuple(config.strides) != expected:
            raise ValueError(f"model config: strides must be {expected} for this backbone, got {config.strides}")
        c1, c2, c3 = config.stem_channels
        self.stem = nn.Sequential(conv_bn_relu(3, c1, 3, 2), conv_bn_relu(c1, c2, 3, 1), conv_bn_relu(c2, c3, 3, 2))
        stages = []
        in_channels = c3
        for i in range(n):
            stages.append(
                _stage(
                    in_channels,
                    config.stage_channels[i],
                    config.concat_channels[i],
                    config.stage_repeats[i],
                    config.layers_per_module,
                    pool=i > 0,
                )
            )
            in_channels = config.concat_channels[i]
        self.stages = nn.ModuleList(stages)
        self.out_channels: tuple[int, ...] = tuple(config.concat_channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features
