"""Dynamic anchor matching (DAM, paper section 3.4, Algorithm 1): one entry point, two implementations.

``dam_match(anchors, pred_boxes, gt_boxes, gt_count, t1=0.35, t2=0.7)`` returns, for every anchor
of every image, a :class:`DamMatch`:

``labels [B, A]`` int64
    0 negative; 1 matched in step 1 (the anchor's best ground truth by *anchor* IoU has
    IoU >= ``t1``); 2 compensated in step 2 (only anchors that failed step 1: the best ground truth
    by IoU of the anchor's *regressed box* has IoU > ``t2``).
``gt_index [B, A]`` int64
    column of ``gt_boxes`` the anchor is matched to, -1 for negatives.
``iou [B, A]`` float32
    the IoU that decided: the anchor IoU for label 1, the regressed-box IoU for label 2, and for
    negatives the best anchor IoU over the image's ground truths (0 when the image has none). The
    negatives' value is what an ignore band (e.g. IoU in [0.3, T1)) or a debugging plot needs.

Conventions:

- Boxes are ``(x1, y1, x2, y2)`` pixels; any floating dtype is accepted and matched in fp32.
  Zero-area (or inverted) boxes have IoU 0 with everything, never NaN. Boxes outside the image
  need no special case.
- Ground truths come padded: image ``b`` owns rows ``0 .. gt_count[b] - 1`` of ``gt_boxes[b]``;
  the rest are ignored (counts are clamped to ``[0, G]``). ``G`` may be 0.
- Ties go to the lowest ground-truth index, in both steps and in both implementations.
- ``best_anchor_fallback`` (off by default, as in the paper): S3FD-style compensation for ground
  truths no anchor reaches: a real ground truth whose best anchor IoU is in ``(0, t1)`` also takes
  that anchor (lowest anchor index on ties) as a label-1 match with its anchor IoU. Step-1 matches
  are never taken away; when several such ground truths want one anchor, the highest IoU wins
  (ties: lowest ground-truth index). It can overwrite a step-2 or negative anchor.
- ``impl``: ``"auto"`` runs the compiled Triton kernel on CUDA tensors and the PyTorch reference
  elsewhere; ``"triton"`` forces the kernel (on CPU tensors only under ``TRITON_INTERPRET=1``);
  ``"torch"`` forces the reference. Both give identical labels and indices.

The reference (``reference.py``) materialises two ``[B, A, G]`` IoU matrices; the kernel
(``triton_kernel.py``) streams ground truths in tiles and keeps only ``O(B * A)`` memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

from acfd.kernels.dam_match.reference import dam_match_reference
from acfd.kernels.dispatch import use_triton


class DamMatch(NamedTuple):
    labels: torch.Tensor  # [B, A] int64: 0 negative, 1 step-1 match, 2 step-2 compensation
    gt_index: torch.Tensor  # [B, A] int64: matched ground-truth column, -1 for negatives
    iou: torch.Tensor  # [B, A] float32: the IoU that decided (see the module docstring)


def dam_match(
    anchors: torch.Tensor,
    pred_boxes: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_count: torch.Tensor | Sequence[int],
    t1: float = 0.35,
    t2: float = 0.7,
    best_anchor_fallback: bool = False,
    impl: str = "auto",
) -> DamMatch:
    """Match anchors ``[A, 4]`` (with their regressed boxes ``[B, A, 4]``) to padded ground truths
    ``[B, G, 4]`` with per-image counts ``gt_count [B]``. See the module docstring for the contract."""
    anchors, pred_boxes, gt_boxes, gt_count = _check_inputs(anchors, pred_boxes, gt_boxes, gt_count)
    if not (math.isfinite(t1) and t1 > 0):
        raise ValueError(f"dam_match: t1 must be a finite number > 0, got {t1!r}")
    if not (math.isfinite(t2) and t2 >= 0):
        raise ValueError(f"dam_match: t2 must be a finite number >= 0, got {t2!r}")
    if use_triton(impl, anchors, "dam_match"):
        from acfd.kernels.dam_match.triton_kernel import dam_match_triton

        result = dam_match_triton(anchors, pred_boxes, gt_boxes, gt_count, t1, t2, best_anchor_fallback)
    else:
        result = dam_match_reference(anchors, pred_boxes, gt_boxes, gt_count, t1, t2, best_anchor_fallback)
    return DamMatch(*result)


def _check_inputs(anchors, pred_boxes, gt_boxes, gt_count):
    for name, t, dims in (
        ("anchors", anchors, "[A, 4]"),
        ("pred_boxes", pred_boxes, "[B, A, 4]"),
        ("gt_boxes", gt_boxes, "[B, G, 4]"),
    ):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"dam_match: {name} must be a tensor {dims}, got {type(t).__name__}")
        if not t.is_floating_point():
            raise ValueError(f"dam_match: {name} must be a floating tensor, got {t.dtype}")
        if t.dim() != dims.count(",") + 1 or t.shape[-1] != 4:
            raise ValueError(f"dam_match: {name} must have shape {dims}, got {list(t.shape)}")
    num_anchors, (batch, pred_anchors), gt_batch = anchors.shape[0], pred_boxes.shape[:2], gt_boxes.shape[0]
    if pred_anchors != num_anchors or gt_batch != batch:
        raise ValueError(
            f"dam_match: shapes disagree: anchors {list(anchors.shape)}, pred_boxes {list(pred_boxes.shape)}, "
            f"gt_boxes {list(gt_boxes.shape)} (want [A, 4], [B, A, 4], [B, G, 4])"
        )
    devices = {anchors.device, pred_boxes.device, gt_boxes.device}
    if len(devices) != 1:
        raise ValueError(
            f"dam_match: anchors, pred_boxes and gt_boxes are on different devices: {sorted(map(str, devices))}"
        )
    if not isinstance(gt_count, torch.Tensor):
        gt_count = torch.as_tensor(list(gt_count), dtype=torch.int64)
    if gt_count.is_floating_point() or gt_count.is_complex() or gt_count.dtype == torch.bool:
        raise ValueError(f"dam_match: gt_count must be an integer tensor, got {gt_count.dtype}")
    if gt_count.dim() != 1 or gt_count.shape[0] != batch:
        raise ValueError(f"dam_match: gt_count must have shape [B] = [{batch}], got {list(gt_count.shape)}")
    gt_count = gt_count.to(device=anchors.device, dtype=torch.int64).clamp(0, gt_boxes.shape[1])
    as_fp32 = [t.to(torch.float32).contiguous() for t in (anchors, pred_boxes, gt_boxes)]
    return (*as_fp32, gt_count.contiguous())
