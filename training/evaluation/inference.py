"""Single- and multi-scale inference of paper section 4.1 for evaluation: image in, detections out.

For each test scale ``(H, W)`` the uint8 RGB image is resized to ``W x H`` (``image_io.resize_rgb``,
the resize rule of training and serving; aspect ratio not kept), normalised with
:func:`acfd.inference.image_io.normalize` and run through the ``Predictor`` (``images [B, 3, H, W]
-> (scores [B, A], boxes [B, A, 4])``); the scales' outputs then go through
:func:`acfd.inference.postprocess.postprocess` (threshold, top-k per scale, map back per axis,
merge, clip, NMS, top-100), the same code the serving postprocess model runs.

The predictor must be in eval mode; inputs go to the device of its first parameter. An
``EngineNetwork`` (an exported graph in a CPU engine of ``acfd.inference.engines``) takes the
resized uint8 pixels instead and normalises in its graph, as the served detector does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from acfd.inference.config import InferenceConfig
from acfd.inference.image_io import normalize, resize_rgb
from acfd.inference.postprocess import postprocess

Detections = tuple[np.ndarray, np.ndarray]  # boxes [N, 4] float32, scores [N] float32


def scales_for(cfg: InferenceConfig, multiscale: bool) -> tuple[tuple[int, int], ...]:
    """The ``(H, W)`` input sizes to run: the three test scales, or the single 640x640 one."""
    return tuple(cfg.test_scales) if multiscale else (tuple(cfg.single_scale),)


def network_input(image_rgb: np.ndarray, scale_hw: tuple[int, int]) -> np.ndarray:
    """uint8 RGB ``[h, w, 3]`` resized to ``scale_hw`` and normalised: float32 ``[3, H, W]``."""
    height, width = scale_hw
    return normalize(resize_rgb(image_rgb, height, width))


class EngineNetwork:
    """An engine where evaluation takes a predictor: ``engine(pixels [B, H, W, 3] uint8)``."""

    def __init__(self, engine):
        self.engine = engine

    def eval(self) -> "EngineNetwork":
        return self


def _device_of(predictor: torch.nn.Module) -> torch.device:
    param = next(predictor.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@torch.inference_mode()
def run_network(predictor: torch.nn.Module, images: Sequence[np.ndarray], scale_hw: tuple[int, int]):
    """Raw predictor outputs for a batch of images at one scale: NumPy ``(scores [B, A], boxes [B, A, 4])``."""
    if isinstance(predictor, EngineNetwork):
        height, width = scale_hw
        return predictor.engine(np.stack([resize_rgb(image, height, width) for image in images]))
    batch = torch.from_numpy(np.stack([network_input(image, scale_hw) for image in images]))
    scores, boxes = predictor(batch.to(_device_of(predictor)))
    return scores.float().cpu().numpy(), boxes.float().cpu().numpy()


def detect_batch(
    predictor: torch.nn.Module,
    images: Sequence[np.ndarray],
    scales: Sequence[tuple[int, int]],
    cfg: InferenceConfig,
) -> list[Detections]:
    """Detections ``(boxes [N, 4], scores [N])`` in original pixels for each image of a batch.

    Images may differ in size: every one is resized to each scale, so a scale is one forward pass.
    """
    if not images:
        return []
    outputs: list[list] = [[] for _ in images]
    for scale_hw in scales:
        scores, boxes = run_network(predictor, images, scale_hw)
        for i in range(len(images)):
            outputs[i].append((scores[i], boxes[i], tuple(scale_hw)))
    return [postprocess(outputs[i], images[i].shape[:2], cfg, xp=np) for i in range(len(images))]


def detect(
    predictor: torch.nn.Module,
    image_rgb: np.ndarray,
    scales: Sequence[tuple[int, int]],
    cfg: InferenceConfig,
) -> Detections:
    """Detections ``(boxes [N, 4] float32, scores [N] float32)`` for one uint8 RGB image."""
    return detect_batch(predictor, [image_rgb], scales, cfg)[0]
