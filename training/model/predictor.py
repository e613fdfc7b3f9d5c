"""Inference wrapper: network + sigmoid + in-graph box decoding, the module that gets exported.

``Predictor(model)(images [B, 3, H, W]) -> (scores [B, A], boxes [B, A, 4])``: scores are
``sigmoid(cls_logits)``, boxes are ``x1, y1, x2, y2`` in input pixels decoded with
``acfd.inference.box_coder.BoxCoder``. Anchors are built inside ``forward`` from the actual per-level
map shapes with torch ops only, so a traced / exported graph with dynamic batch, height and width
stays correct at every input size. No thresholding or NMS here (that is postprocessing).
"""

from __future__ import annotations

import torch
from torch import nn

from acfd.inference.box_coder import BoxCoder
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


class PixelPredictor(nn.Module):
    """The deploy graph's entry: uint8 RGB pixels ``[B, H, W, 3]`` -> ``Predictor`` outputs.

    Casting, the channel transpose and ``(rgb - mean) / std`` (``acfd.inference.image_io``) run
    in the graph, so whoever feeds the exported model sends plain resized pixels: a quarter of the
    bytes of float32 input, and the engine fuses the arithmetic into its first convolution.
    """

    def __init__(self, predictor: Predictor):
        super().__init__()
        from acfd.inference.image_io import PIXEL_MEAN, PIXEL_STD

        self.predictor = predictor
        self.register_buffer("mean", torch.tensor(PIXEL_MEAN, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(PIXEL_STD, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # The same float32 operations as image_io.normalize, so both give bit-identical input.
        images = (pixels.permute(0, 3, 1, 2).to(torch.float32) - self.mean) / self.std
        return self.predictor(images)
