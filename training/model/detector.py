"""The ACFD network (paper Fig. 1): VoVNetV3 backbone -> ABi-FPN -> shared anchor head
(shared convolutions, per-level BatchNorm: ``acfd.training.model.head``).

``build_model(preset)`` gives a freshly initialised ``ACFD``:

* every convolution: Kaiming normal (fan-out, ReLU gain) - the paper trains from scratch with
  "kaiming" initialisation; BatchNorm weight 1, bias 0; other conv biases 0;
* the two prediction convolutions (last conv of each head branch): normal(0, 0.01) weights, and the
  classification bias ``-log((1 - p) / p)`` with ``p = prior_prob`` (0.01). This is the focal-loss
  initialisation (Lin et al. 2017, section 4.1); with Kaiming-sized weights the logits would have a
  spread of several units and the prior bias would not give ``sigmoid(logit) ~ p`` at the start.

``ACFD.forward(images [B, 3, H, W]) -> (cls_logits [B, A], box_deltas [B, A, 4])`` with
``A = acfd.inference.anchors.anchor_count(H, W, strides)`` in the anchors' order. ``forward_levels``
gives the per-level maps (used by ``Predictor`` to read level sizes); ``fuse()`` switches the whole
network to its deploy form (see ``acfd.training.model.acb``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from acfd.inference.anchors import anchors_for_sizes, make_anchors
from acfd.training.config import ModelConfig, Preset, load_preset
from acfd.training.model.abifpn import ABiFPN
from acfd.training.model.acb import ACB, ConvBN
from acfd.training.model.head import DetectionHead, flatten_levels
from acfd.training.model.vovnet import VoVNetV3


class ACFD(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.backbone = VoVNetV3(config)
        self.neck = ABiFPN(self.backbone.out_channels, config.neck_channels, config.neck_repeats)
        self.head = DetectionHead(config.neck_channels, config.head_channels, config.head_depth, len(config.strides))

    @property
    def strides(self) -> tuple[int, ...]:
        return tuple(self.config.strides)

    def forward_levels(self, images: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per-level ``cls [B, 1, h, w]`` and ``reg [B, 4, h, w]`` maps, stride 4 first."""
        return self.head(self.neck(self.backbone(images)))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return flatten_levels(*self.forward_levels(images))

    def anchors(self, height: int, width: int, device: torch.device | str | None = None) -> torch.Tensor:
        """Anchors ``[A, 4]`` (x1, y1, x2, y2, input pixels) matching ``forward``'s outputs."""
        return make_anchors(height, width, self.strides, self.config.anchor_scale, device)

    def anchors_for_levels(self, level_maps: list[torch.Tensor]) -> torch.Tensor:
        """Anchors for the actual level sizes of ``forward_levels`` output (export-friendly)."""
        sizes = [(m.shape[-2], m.shape[-1]) for m in level_maps]
        first = level_maps[0]
        return anchors_for_sizes(sizes, self.strides, self.config.anchor_scale, first.device, first.dtype)

    @property
    def is_fused(self) -> bool:
        return all(m.is_fused for m in self.modules() if isinstance(m, (ACB, ConvBN)))

    def fuse(self) -> "ACFD":
        """Switch every ACB and conv+BN to one biased conv (deploy form), in place; eval mode."""
        self.eval()
        for module in list(self.modules()):
            if isinstance(module, (ACB, ConvBN)):
                module.fuse()
        return self


def init_weights(model: ACFD) -> ACFD:
    """Kaiming initialisation plus the focal-loss prior on the classification output (module doc)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    p = model.config.prior_prob
    if not 0.0 < p < 1.0:
        raise ValueError(f"model config: prior_prob must be in (0, 1), got {p}")
    for conv in (model.head.cls_out, model.head.reg_out):
        nn.init.normal_(conv.weight, mean=0.0, std=0.01)
        nn.init.zeros_(conv.bias)
    nn.init.constant_(model.head.cls_out.bias, -math.log((1.0 - p) / p))
    return model


def build_model(preset: str | Preset | ModelConfig) -> ACFD:
    """A freshly initialised ACFD from a preset name / YAML path, a ``Preset`` or a ``ModelConfig``."""
    if isinstance(preset, str):
        config = load_preset(preset).model
    elif isinstance(preset, Preset):
        config = preset.model
    elif isinstance(preset, ModelConfig):
        config = preset
    else:
        raise TypeError(f"build_model takes a preset name, Preset or ModelConfig, not {type(preset).__name__}")
    return init_weights(ACFD(config))
