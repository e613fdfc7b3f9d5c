"""Anchor head shared by every pyramid level: one anchor per location (paper section 4.1).

Contract: ``DetectionHead(in_channels, channels, depth, levels)(features) -> (cls, reg)`` with one
entry per level: ``cls[i]`` is ``[B, 1, h_i, w_i]`` (logits), ``reg[i]`` is ``[B, 4, h_i, w_i]``
(box deltas ``dx, dy, dw, dh`` for ``acfd.inference.box_coder.BoxCoder``). ``flatten_levels`` turns
them into ``[B, A]`` and ``[B, A, 4]`` in the order of ``acfd.inference.anchors`` (level, then y,
then x).

Each branch is ``depth`` x ACB-BN-ReLU at ``channels`` and a plain 3x3 conv with bias to 1 (cls) or
4 (reg) outputs. The convolution weights are shared by all levels; the BatchNorms are not: every
level has its own (``level_acbs``: one ACB per level sharing the convolution modules), as in
EfficientDet. One BatchNorm shared by six levels would normalise with a batch statistic of whichever
level runs, while its running statistics blend all six, so the eval-mode network would differ from
the one trained (an 8-image memorisation run had train-mode loss 0.26 and eval-mode loss 2.44).

``fuse()`` of each level's ACB gives the deploy form: one biased ``k x k`` convolution per level
(the shared kernels with that level's BatchNorms folded in, see ``acfd.training.model.acb``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from acfd.training.model.acb import ACB


def level_acbs(in_channels: int, out_channels: int, levels: int, kernel_size: int = 3) -> nn.ModuleList:
    """One ``ACB`` per level, all holding the SAME ``square`` / ``hor`` / ``ver`` convolutions.

    Each level's ACB keeps its own three BatchNorms. ``ACB.fuse()`` on each then gives one biased
    conv per level (the shared kernels with that level's BNs folded in). The kernels are registered
    as submodules of the first level's ACB only; the others hold plain references, so
    ``modules()``, ``parameters()`` and ``state_dict()`` list them once, and ``.to()`` / deep copies
    (which keep shared identity) move them with the first level.
    """
    first = ACB(in_channels, out_channels, kernel_size)
    blocks = [first]
    for _ in range(levels - 1):
        block = ACB(in_channels, out_channels, kernel_size)
        for name in ("square", "hor", "ver"):
            del block._modules[name]
            object.__setattr__(block, name, getattr(first, name))
        blocks.append(block)
    return nn.ModuleList(blocks)


class _Branch(nn.Module):
    """``depth`` x ACB-ReLU (one ACB per level, shared kernels), then a shared 3x3 conv with bias to
    ``outputs`` channels."""

    def __init__(self, in_channels: int, channels: int, depth: int, outputs: int, levels: int):
        super().__init__()
        self.layers = nn.ModuleList(
            level_acbs(in_channels if i == 0 else channels, channels, levels) for i in range(depth)
        )
        last = channels if depth > 0 else in_channels
        self.out = nn.Conv2d(last, outputs, kernel_size=3, padding=1, bias=True)

    def forward(self, x: torch.Tensor, level: int) -> torch.Tensor:
        for layer in self.layers:
            x = torch.relu(layer[level](x))
        return self.out(x)


class DetectionHead(nn.Module):
    def __init__(self, in_channels: int, channels: int, depth: int, levels: int = 6):
        super().__init__()
        self.levels = levels
        self.cls_branch = _Branch(in_channels, channels, depth, 1, levels)
        self.reg_branch = _Branch(in_channels, channels, depth, 4, levels)

    @property
    def cls_out(self) -> nn.Conv2d:
        return self.cls_branch.out

    @property
    def reg_out(self) -> nn.Conv2d:
        return self.reg_branch.out

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        if len(features) != self.levels:
            raise ValueError(f"DetectionHead built for {self.levels} levels got {len(features)} feature maps")
        cls = [self.cls_branch(f, i) for i, f in enumerate(features)]
        reg = [self.reg_branch(f, i) for i, f in enumerate(features)]
        return cls, reg


def flatten_levels(cls: Sequence[torch.Tensor], reg: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-level maps -> ``cls_logits [B, A]``, ``box_deltas [B, A, 4]`` (level, y, x order)."""
    logits = torch.cat([c.flatten(1) for c in cls], dim=1)
    deltas = torch.cat([r.permute(0, 2, 3, 1).flatten(1, 2) for r in reg], dim=1)
    return logits, deltas
