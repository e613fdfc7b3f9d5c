"""Test-time settings: the one dataclass evaluation, export manifests, serving and the API read.

``InferenceConfig`` is a preset's ``inference`` section (``acfd.training.config.Preset``); an
export manifest carries its values (``acfd.inference.manifest``) and the served models rebuild it
from there (``acfd.inference.pipeline.inference_config``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InferenceConfig:
    """Test-time settings of paper section 4.1, shared by evaluation, export manifests and serving.

    Scales are ``(height, width)``: the paper's "480x645" is read as 480 rows by 645 columns, the
    landscape shape of cartoon frames. Images are resized to each scale without keeping the aspect
    ratio, and boxes are mapped back per axis.
    """

    single_scale: tuple[int, int] = (640, 640)
    test_scales: tuple[tuple[int, int], ...] = ((480, 645), (640, 860), (800, 1075))
    score_threshold: float = 0.08
    pre_nms_topk: int = 1000  # per scale
    nms_iou: float = 0.55
    max_detections: int = 100
    # Score from which `acfd detect`, `acfd demo` and the clients show a detection (the server keeps
    # everything above score_threshold, which AP needs). A trained model carries its own, chosen at
    # its best F1 on a hold-out (scripts/package_weights.py --threshold-from).
    display_threshold: float = 0.5
