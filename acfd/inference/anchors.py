"""One square anchor per feature-map location (paper section 4.1, "Anchor Design").

Every downsampling in the network is a 3x3, stride-2, padding-1 op, so a level of stride ``s``
has ``ceil(H / s) x ceil(W / s)`` cells for an ``H x W`` input. Anchors are ordered level by
level (stride 4 first), then row-major (y, then x) within a level, the same order in which the
head flattens its outputs. Anchor ``i`` of a level with stride ``s`` at cell ``(y, x)`` is centred
on ``((x + 0.5) s, (y + 0.5) s)`` with side ``anchor_scale * s``: 16 to 512 pixels for strides
4 to 128, 34,125 anchors at 640 x 640.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def level_sizes(height: int, width: int, strides: Sequence[int]) -> list[tuple[int, int]]:
    """Feature-map size ``(h, w)`` of each level for an ``height x width`` input."""
    return [(math.ceil(height / s), math.ceil(width / s)) for s in strides]


def anchor_count(height: int, width: int, strides: Sequence[int]) -> int:
    return sum(h * w for h, w in level_sizes(height, width, strides))


def anchors_for_sizes(
    sizes: Sequence[tuple[int, int]],
    strides: Sequence[int],
    anchor_scale: float = 4.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Anchors ``[A, 4]`` (x1, y1, x2, y2 in input pixels) for the given feature-map sizes.

    ``sizes`` may hold traced tensor values (ONNX export with dynamic H, W); only torch ops are used.
    """
    boxes = []
    for (h, w), s in zip(sizes, strides):
        ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) * s
        xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) * s
        cy, cx = torch.meshgrid(ys, xs, indexing="ij")
        half = anchor_scale * s / 2.0
        boxes.append(torch.stack([cx - half, cy - half, cx + half, cy + half], dim=-1).reshape(-1, 4))
    return torch.cat(boxes, dim=0)


def make_anchors(
    height: int,
    width: int,
    strides: Sequence[int] = (4, 8, 16, 32, 64, 128),
    anchor_scale: float = 4.0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Anchors ``[A, 4]`` for an ``height x width`` input."""
    return anchors_for_sizes(level_sizes(height, width, strides), strides, anchor_scale, device)
