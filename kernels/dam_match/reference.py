"""PyTorch reference of dynamic anchor matching (DAM, paper Algorithm 1): the plain version.

It builds the two ``[B, A, G]`` IoU matrices (anchors vs ground truths, regressed boxes vs ground
truths), takes max / argmax over the ground truths and combines them with ``where``. It is what
CPU training runs and what the Triton kernel is checked against, so the IoU arithmetic below is
written in exactly the order the kernel uses (``triton_kernel.py``): same fp32 operations, same
results bit for bit.

The contract (labels, indices, IoUs, ties, padding, the optional best-anchor fallback) is stated
once, in ``acfd.kernels.dam_match`` (``__init__.py``).
"""

from __future__ import annotations

import torch

# Two ground truths are told apart by index only when their IoU is bit-identical; padded columns
# get this value so that any real IoU (>= 0) beats them.
PAD_IOU = -1.0


def box_iou(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """IoU ``[..., N, M]`` of ``boxes_a [..., N, 4]`` and ``boxes_b [..., M, 4]`` (leading dims broadcast).

    Boxes are ``(x1, y1, x2, y2)``; a box with ``x2 <= x1`` or ``y2 <= y1`` has area 0 and IoU 0 with
    everything (no NaN). In-place steps keep the peak at about three ``[..., N, M]`` fp32 buffers.
    """
    ax1, ay1, ax2, ay2 = (c[..., :, None] for c in boxes_a.unbind(-1))
    bx1, by1, bx2, by2 = (c[..., None, :] for c in boxes_b.unbind(-1))
    iw = torch.minimum(ax2, bx2)
    iw.sub_(torch.maximum(ax1, bx1)).clamp_(min=0)
    ih = torch.minimum(ay2, by2)
    ih.sub_(torch.maximum(ay1, by1)).clamp_(min=0)
    inter = iw.mul_(ih)
    del ih
    area_a = (ax2 - ax1).clamp_(min=0) * (ay2 - ay1).clamp_(min=0)
    area_b = (bx2 - bx1).clamp_(min=0) * (by2 - by1).clamp_(min=0)
    union = area_a + area_b
    union.sub_(inter)
    # union == 0 only when both areas are 0, and then inter == 0: 0 / 1 gives the IoU 0 we want.
    union.masked_fill_(union <= 0, 1.0)
    return inter.div_(union)


def gt_valid_mask(gt_count: torch.Tensor, num_gt: int) -> torch.Tensor:
    """``[B, G]`` bool: column ``j`` of image ``b`` holds a real ground truth (``j < gt_count[b]``)."""
    return torch.arange(num_gt, device=gt_count.device)[None, :] < gt_count[:, None]


def dam_match_reference(
    anchors: torch.Tensor,
    pred_boxes: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_count: torch.Tensor,
    t1: float,
    t2: float,
    best_anchor_fallback: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(labels, gt_index, iou)`` for already validated fp32 inputs on one device.

    ``anchors [A, 4]``, ``pred_boxes [B, A, 4]``, ``gt_boxes [B, G, 4]``, ``gt_count [B]`` int64 in
    ``[0, G]``. See ``acfd.kernels.dam_match`` for the meaning of the outputs.
    """
    batch, num_anchors = pred_boxes.shape[:2]
    num_gt = gt_boxes.shape[1]
    device = pred_boxes.device
    labels = torch.zeros(batch, num_anchors, dtype=torch.int64, device=device)
    gt_index = torch.full((batch, num_anchors), -1, dtype=torch.int64, device=device)
    if num_gt == 0 or batch == 0 or num_anchors == 0:
        return labels, gt_index, torch.zeros(batch, num_anchors, dtype=torch.float32, device=device)
    t1_ = torch.tensor(t1, dtype=torch.float32, device=device)
    t2_ = torch.tensor(t2, dtype=torch.float32, device=device)
    padded = ~gt_valid_mask(gt_count, num_gt)[:, None, :]  # [B, 1, G]

    # Step 1: anchor IoU. torch.max returns the first (lowest) index among equal maxima.
    anchor_iou = box_iou(anchors[None], gt_boxes).masked_fill_(padded, PAD_IOU)
    anchor_max, anchor_arg = anchor_iou.max(dim=2)
    if best_anchor_fallback:
        gt_best_iou, gt_best_anchor = anchor_iou.max(dim=1)  # [B, G]: each ground truth's best anchor
    del anchor_iou

    # Step 2: IoU of each anchor's regressed box (computed for all anchors; only failures use it).
    box_iou_ = box_iou(pred_boxes, gt_boxes).masked_fill_(padded, PAD_IOU)
    regressed_max, regressed_arg = box_iou_.max(dim=2)
    del box_iou_

    step1 = anchor_max >= t1_
    step2 = ~step1 & (regressed_max > t2_)
    labels = torch.where(step1, 1, torch.where(step2, 2, 0))
    gt_index = torch.where(step1, anchor_arg, torch.where(step2, regressed_arg, -1))
    iou = torch.where(step1, anchor_max, torch.where(step2, regressed_max, anchor_max.clamp(min=0)))
    if best_anchor_fallback:
        valid = gt_valid_mask(gt_count, num_gt)
        labels, gt_index, iou = apply_best_anchor_fallback(
            labels, gt_index, iou, gt_best_iou, gt_best_anchor, valid, t1_
        )
    return labels, gt_index, iou


def apply_best_anchor_fallback(
    labels: torch.Tensor,
    gt_index: torch.Tensor,
    iou: torch.Tensor,
    gt_best_iou: torch.Tensor,
    gt_best_anchor: torch.Tensor,
    gt_valid: torch.Tensor,
    t1: torch.Tensor | float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """S3FD-style compensation, shared by the reference and the Triton path.

    A real ground truth whose best anchor IoU ``gt_best_iou [B, G]`` is above 0 but below ``t1``
    (no anchor reaches T1 for it) takes its best anchor ``gt_best_anchor [B, G]`` as a label-1
    match, unless step 1 already matched that anchor (step-1 matches are never taken away). When
    several such ground truths want the same anchor, the highest IoU wins, ties to the lowest
    ground-truth index. Dense tensor ops only: no host synchronisation.
    """
    batch, num_anchors = labels.shape
    num_gt = gt_best_iou.shape[1]
    need = gt_valid & (gt_best_iou > 0) & (gt_best_iou < t1)
    flat = (torch.arange(batch, device=labels.device)[:, None] * num_anchors + gt_best_anchor).reshape(-1)
    want = torch.where(need, gt_best_iou, torch.full_like(gt_best_iou, PAD_IOU)).reshape(-1)
    best = torch.full((batch * num_anchors,), PAD_IOU, dtype=torch.float32, device=labels.device)
    best.scatter_reduce_(0, flat, want, reduce="amax")
    column = torch.arange(num_gt, device=labels.device).expand(batch, num_gt).reshape(-1)
    winner = torch.where(need.reshape(-1) & (want == best[flat]), column, num_gt)
    chosen = torch.full((batch * num_anchors,), num_gt, dtype=torch.int64, device=labels.device)
    chosen.scatter_reduce_(0, flat, winner, reduce="amin")
    chosen = chosen.view(batch, num_anchors)
    take = (chosen < num_gt) & (labels != 1)
    labels = torch.where(take, 1, labels)
    gt_index = torch.where(take, chosen, gt_index)
    iou = torch.where(take, best.view(batch, num_anchors), iou)
    return labels, gt_index, iou
