"""Anchor head shared by every pyramid level: one anchor per location (paper section 4.1).

Contract: ``DetectionHead(in_channels, channels, depth)(features) -> (cls, reg)`` with one entry per
level: ``cls[i]`` is ``[B, 1, h_i, w_i]`` (logits), ``reg[i]`` is ``[B, 4, h_i, w_i]`` (box deltas
``dx, dy, dw, dh`` for ``acfd.training.box_coder.BoxCoder``). ``flatten_levels`` turns them into
``[B, A]`` and ``[B, A, 4]`` in the order of ``acfd.training.anchors`` (level, then y, then x).

Each branch is ``depth`` x ACB-BN-ReLU at ``channels`` and a plain 3x3 conv with bias to 1 (cls) or
4 (reg) outputs; the same weights run on every level.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from acfd.training.model.acb import acb_relu


def _branch(in_channels: int, channels: int, depth: int, outputs: int) -> nn.Sequential:
    layers = [acb_relu(in_channels if i == 0 else channels, channels) for i in range(depth)]
    last = channels if depth > 0 else in_channels
    return nn.Sequential(*layers, nn.Conv2d(last, outputs, kernel_size=3, padding=1, bias=True))


class DetectionHead(nn.Module):
    def __init__(self, in_channels: int, channels: int, depth: int):
        super().__init__()
        self.cls_branch = _branch(in_channels, channels, depth, 1)
        self.reg_branch = _branch(in_channels, channels, depth, 4)

    @property
    def cls_out(self) -> nn.Conv2d:
        return self.cls_branch[-1]

    @property
    def reg_out(self) -> nn.Conv2d:
        return self.reg_branch[-1]

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return [self.cls_branch(f) for f in features], [self.reg_branch(f) for f in features]


def flatten_levels(cls: Sequence[torch.Tensor], reg: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-level maps -> ``cls_logits [B, A]``, ``box_deltas [B, A, 4]`` (level, y, x order)."""
    logits = torch.cat([c.flatten(1) for c in cls], dim=1)
    deltas = torch.cat([r.permute(0, 2, 3, 1).flatten(1, 2) for r in reg], dim=1)
    return logits, deltas
