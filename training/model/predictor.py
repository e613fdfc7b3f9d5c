"""Inference wrapper: network + sigmoid + in-graph box decoding, the module that gets exported.

``Predictor(model)(images [B, 3, H, W]) -> (scores [B, A], boxes [B, A, 4])``: scores are
``sigmoid(cls_logits)``, boxes are ``x1, y1, x2, y2`` in input pixels decoded with
``acfd.training.box_coder.BoxCoder``. Anchors are built inside ``forward`` from the actual per-level
map shapes with torch ops only, so a traced / exported graph with dynamic batch, height and width
stays correct at every input size. No thresholding or NMS here (that is postprocessing).
"""

from __future__ import annotations

import torch
from torch import nn

from acfd.training.box_coder import BoxCoder
from acfd.training.model.detector import ACFD
from acfd.training.model.head import flatten_levels


class Predictor(nn.Module):
    def __init__(self, model: ACFD, box_coder: BoxCoder | None = None):
        super().__init__()
        self.model = model
        self.box_coder = box_coder or BoxCoder()

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cls, reg = self.model.forward_levels(images)
        anchors = self.model.anchors_for_levels(cls)
        logits, deltas = flatten_levels(cls, reg)
        boxes = self.box_coder.decode(deltas, anchors.unsqueeze(0))
        return torch.sigmoid(logits), boxes
