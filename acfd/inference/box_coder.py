"""SSD-style box coding: the single place where boxes and regression offsets are converted.

Training (targets), evaluation, export (the ONNX graph decodes in-graph) and serving all use this.
Boxes are ``(x1, y1, x2, y2)`` in pixels; offsets are ``(dx, dy, dw, dh)`` with
``dx = (gx - ax) / (aw * v0)``, ``dw = log(gw / aw) / v1`` for centres ``g``, ``a`` and variances
``(v0, v1)``.
"""

from __future__ import annotations

import math

import torch

# exp() of larger dw/dh would blow boxes up beyond any image (1000x the anchor side).
_MAX_LOG_SCALE = math.log(1000.0)


class BoxCoder:
    def __init__(self, variances: tuple[float, float] = (0.1, 0.2)):
        self.variances = variances

    def encode(self, boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """Offsets ``[..., 4]`` that turn ``anchors`` into ``boxes`` (broadcasting on leading dims)."""
        v0, v1 = self.variances
        a_w = anchors[..., 2] - anchors[..., 0]
        a_h = anchors[..., 3] - anchors[..., 1]
        a_x = anchors[..., 0] + 0.5 * a_w
        a_y = anchors[..., 1] + 0.5 * a_h
        eps = torch.finfo(boxes.dtype).eps
        b_w = (boxes[..., 2] - boxes[..., 0]).clamp(min=eps)
        b_h = (boxes[..., 3] - boxes[..., 1]).clamp(min=eps)
        b_x = boxes[..., 0] + 0.5 * (boxes[..., 2] - boxes[..., 0])
        b_y = boxes[..., 1] + 0.5 * (boxes[..., 3] - boxes[..., 1])
        return torch.stack(
            [
                (b_x - a_x) / (a_w * v0),
                (b_y - a_y) / (a_h * v0),
                torch.log(b_w / a_w) / v1,
                torch.log(b_h / a_h) / v1,
            ],
            dim=-1,
        )

    def decode(self, offsets: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """Boxes ``[..., 4]`` from ``offsets`` relative to ``anchors`` (broadcasting on leading dims)."""
        v0, v1 = self.variances
        a_w = anchors[..., 2] - anchors[..., 0]
        a_h = anchors[..., 3] - anchors[..., 1]
        a_x = anchors[..., 0] + 0.5 * a_w
        a_y = anchors[..., 1] + 0.5 * a_h
        c_x = a_x + offsets[..., 0] * v0 * a_w
        c_y = a_y + offsets[..., 1] * v0 * a_h
        w = a_w * torch.exp((offsets[..., 2] * v1).clamp(max=_MAX_LOG_SCALE))
        h = a_h * torch.exp((offsets[..., 3] * v1).clamp(max=_MAX_LOG_SCALE))
        return torch.stack([c_x - 0.5 * w, c_y - 0.5 * h, c_x + 0.5 * w, c_y + 0.5 * h], dim=-1)
