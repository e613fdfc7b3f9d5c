"""OpenAI Triton kernel for dynamic anchor matching: one fused pass, ``O(B * A)`` memory.

Each program owns ``BLOCK_A`` anchors of one image (grid ``(ceil(A / BLOCK_A), B)``). It loads
those anchors and their regressed boxes once, then streams only that image's ``gt_count[b]``
ground truths in tiles of ``BLOCK_G``: from each loaded tile it computes the anchor IoU and the
regressed-box IoU tiles, folds them into running max / argmax (ties to the lowest ground-truth
index: a later tile wins only when strictly better), and finally applies Algorithm 1 and writes
label, index and IoU. The ``A x G`` IoU matrix never exists in memory, and images with few faces
cost few iterations even when the batch is padded to a crowded image's ``G``.

With ``best_anchor_fallback`` the same tiles also give, per ground truth, the block's best anchor,
folded across programs with an int64 ``atomic_max`` on the key ``(iou bits << 32) | (2^31 - 1 -
anchor)`` (non-negative fp32 bits order like the floats; the low half prefers the lowest anchor
index). The fallback itself is then the shared dense pass of ``reference.py``.

The IoU arithmetic is the reference's, operation for operation, and the kernel is launched with
``enable_fp_fusion=False`` so that the compiler does not contract it into FMAs: compiled and
reference IoUs agree bit for bit, hence identical labels even at the thresholds.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from acfd.kernels.aot import AotLaunch
from acfd.kernels.dam_match.reference import PAD_IOU, apply_best_anchor_fallback, gt_valid_mask

# Launch parameters of ``dam_match`` (the training path): tile sizes and warps. AOT_LAUNCHES below
# lists every configuration they give; the AOT test compiles each for sm_80 and sm_90. 128 x 16 on
# 8 warps holds 8 IoU pairs per thread: about 130-165 registers and no spill on either architecture
# (128 x 32 on 4 warps, the first choice, spilled 400-600 bytes per thread; benchmarks/RESULTS.md).
BLOCK_A = 128
BLOCK_G = 16
NUM_WARPS = 8
KERNEL_OPTIONS = {"enable_fp_fusion": False}  # bit-exact IoUs (module docstring)
_LOW_MAX = 2147483647  # 2^31 - 1: low half of the fallback key is _LOW_MAX - anchor index
LOW_MAX = tl.constexpr(_LOW_MAX)  # the same, readable inside the kernel (plain globals are not)


@triton.jit
def _area(x1, y1, x2, y2):
    return tl.maximum(x2 - x1, 0.0) * tl.maximum(y2 - y1, 0.0)


@triton.jit
def _iou_tile(ax1, ay1, ax2, ay2, area_a, bx1, by1, bx2, by2, area_b):
    """IoU of a column of boxes ``[BA, 1]`` with a row of boxes ``[1, BG]``, as ``reference.box_iou``."""
    iw = tl.maximum(tl.minimum(ax2, bx2) - tl.maximum(ax1, bx1), 0.0)
    ih = tl.maximum(tl.minimum(ay2, by2) - tl.maximum(ay1, by1), 0.0)
    inter = iw * ih
    union = area_a + area_b - inter
    union = tl.where(union > 0.0, union, 1.0)
    return inter / union


@triton.jit
def _fold_row_max(iou, offs_g, best, arg, num_gt):
    """Fold a tile's per-anchor max / first argmax into the running ``best`` / ``arg``."""
    tile_max = tl.max(iou, 1)
    tile_arg = tl.min(tl.where(iou == tile_max[:, None], offs_g[None, :], num_gt), 1)
    better = tile_max > best
    return tl.where(better, tile_max, best), tl.where(better, tile_arg, arg)


@triton.jit
def dam_match_kernel(
    anchors_ptr,
    pred_ptr,
    gt_ptr,
    count_ptr,  # [A, 4], [B, A, 4], [B, G, 4] fp32; [B] int64
    labels_ptr,
    index_ptr,
    iou_ptr,  # [B, A] int64, int64, fp32 outputs
    gt_key_ptr,  # [B, G] int64 best-anchor keys (FALLBACK only), filled with -1
    num_anchors,
    num_gt,
    t1,
    t2,
    BLOCK_A: tl.constexpr,
    BLOCK_G: tl.constexpr,
    FALLBACK: tl.constexpr,
):
    pid_a = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    offs_a = pid_a * BLOCK_A + tl.arange(0, BLOCK_A)
    amask = offs_a < num_anchors

    a_ptr = anchors_ptr + offs_a * 4
    ax1 = tl.load(a_ptr + 0, mask=amask, other=0.0)
    ay1 = tl.load(a_ptr + 1, mask=amask, other=0.0)
    ax2 = tl.load(a_ptr + 2, mask=amask, other=0.0)
    ay2 = tl.load(a_ptr + 3, mask=amask, other=0.0)
    p_ptr = pred_ptr + (b * num_anchors + offs_a) * 4
    px1 = tl.load(p_ptr + 0, mask=amask, other=0.0)
    py1 = tl.load(p_ptr + 1, mask=amask, other=0.0)
    px2 = tl.load(p_ptr + 2, mask=amask, other=0.0)
    py2 = tl.load(p_ptr + 3, mask=amask, other=0.0)
    area_a = _area(ax1, ay1, ax2, ay2)[:, None]
    area_p = _area(px1, py1, px2, py2)[:, None]
    ax1, ay1, ax2, ay2 = ax1[:, None], ay1[:, None], ax2[:, None], ay2[:, None]
    px1, py1, px2, py2 = px1[:, None], py1[:, None], px2[:, None], py2[:, None]

    best_a = tl.full([BLOCK_A], -1.0, tl.float32)
    best_p = tl.full([BLOCK_A], -1.0, tl.float32)
    arg_a = tl.zeros([BLOCK_A], tl.int32)
    arg_p = tl.zeros([BLOCK_A], tl.int32)
    count = tl.load(count_ptr + b).to(tl.int32)
    g_base = gt_ptr + b * num_gt * 4
    for g0 in range(0, count, BLOCK_G):
        offs_g = g0 + tl.arange(0, BLOCK_G)
        gmask = offs_g < count
        g_ptr = g_base + offs_g * 4
        gx1 = tl.load(g_ptr + 0, mask=gmask, other=0.0)
        gy1 = tl.load(g_ptr + 1, mask=gmask, other=0.0)
        gx2 = tl.load(g_ptr + 2, mask=gmask, other=0.0)
        gy2 = tl.load(g_ptr + 3, mask=gmask, other=0.0)
        area_g = _area(gx1, gy1, gx2, gy2)[None, :]
        gx1, gy1, gx2, gy2 = gx1[None, :], gy1[None, :], gx2[None, :], gy2[None, :]

        iou_a = _iou_tile(ax1, ay1, ax2, ay2, area_a, gx1, gy1, gx2, gy2, area_g)
        iou_a = tl.where(gmask[None, :], iou_a, -1.0)
        best_a, arg_a = _fold_row_max(iou_a, offs_g, best_a, arg_a, num_gt)
        iou_p = _iou_tile(px1, py1, px2, py2, area_p, gx1, gy1, gx2, gy2, area_g)
        iou_p = tl.where(gmask[None, :], iou_p, -1.0)
        best_p, arg_p = _fold_row_max(iou_p, offs_g, best_p, arg_p, num_gt)

        if FALLBACK:
            col = tl.where(amask[:, None], iou_a, -1.0)
            col_max = tl.max(col, 0)
            col_arg = tl.min(tl.where(col == col_max[None, :], offs_a[:, None], num_anchors), 0)
            key = (col_max.to(tl.int32, bitcast=True).to(tl.int64) << 32) + (LOW_MAX - col_arg.to(tl.int64))
            tl.atomic_max(gt_key_ptr + b * num_gt + offs_g, key, mask=gmask & (col_max >= 0.0))

    step1 = best_a >= t1
    step2 = (best_a < t1) & (best_p > t2)
    label = tl.where(step1, 1, tl.where(step2, 2, 0))
    index = tl.where(step1, arg_a, tl.where(step2, arg_p, -1))
    iou = tl.where(step1, best_a, tl.where(step2, best_p, tl.maximum(best_a, 0.0)))
    out = b * num_anchors + offs_a
    tl.store(labels_ptr + out, label.to(tl.int64), mask=amask)
    tl.store(index_ptr + out, index.to(tl.int64), mask=amask)
    tl.store(iou_ptr + out, iou, mask=amask)


def dam_match_triton(
    anchors: torch.Tensor,
    pred_boxes: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_count: torch.Tensor,
    t1: float,
    t2: float,
    best_anchor_fallback: bool = False,
    block_a: int = BLOCK_A,
    block_g: int = BLOCK_G,
    num_warps: int = NUM_WARPS,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(labels, gt_index, iou)`` for validated contiguous fp32 inputs (see ``dam_match``).

    ``dam_match`` launches the module's tile sizes and warps (the ``AOT_LAUNCHES`` entries); other
    values are for tests and the tile sweep of ``benchmarks/gpu_check.py``."""
    batch, num_anchors = pred_boxes.shape[:2]
    num_gt = gt_boxes.shape[1]
    device = pred_boxes.device
    labels = torch.empty(batch, num_anchors, dtype=torch.int64, device=device)
    gt_index = torch.empty(batch, num_anchors, dtype=torch.int64, device=device)
    iou = torch.empty(batch, num_anchors, dtype=torch.float32, device=device)
    if batch == 0 or num_anchors == 0:
        return labels, gt_index, iou
    fallback = best_anchor_fallback and num_gt > 0
    gt_key = torch.full((batch, num_gt), -1, dtype=torch.int64, device=device) if fallback else labels
    grid = (triton.cdiv(num_anchors, block_a), batch)
    dam_match_kernel[grid](
        anchors,
        pred_boxes,
        gt_boxes,
        gt_count,
        labels,
        gt_index,
        iou,
        gt_key,
        num_anchors,
        num_gt,
        float(t1),
        float(t2),
        BLOCK_A=block_a,
        BLOCK_G=block_g,
        FALLBACK=fallback,
        num_warps=num_warps,
        **KERNEL_OPTIONS,
    )
    if fallback:
        found = gt_key >= 0
        gt_best_iou = torch.where(found, (gt_key >> 32).to(torch.int32).view(torch.float32), PAD_IOU)
        gt_best_anchor = torch.where(found, _LOW_MAX - (gt_key & 0xFFFFFFFF), 0)
        valid = gt_valid_mask(gt_count, num_gt)
        t1_ = torch.tensor(t1, dtype=torch.float32, device=device)
        labels, gt_index, iou = apply_best_anchor_fallback(
            labels, gt_index, iou, gt_best_iou, gt_best_anchor, valid, t1_
        )
    return labels, gt_index, iou


# ---------------------------------------------------------------- ahead-of-time table (kernels/aot.py)

SIGNATURE = {
    "anchors_ptr": "*fp32",
    "pred_ptr": "*fp32",
    "gt_ptr": "*fp32",
    "count_ptr": "*i64",
    "labels_ptr": "*i64",
    "index_ptr": "*i64",
    "iou_ptr": "*fp32",
    "gt_key_ptr": "*i64",
    "num_anchors": "i32",
    "num_gt": "i32",
    "t1": "fp32",
    "t2": "fp32",
}
AOT_LAUNCHES = tuple(
    AotLaunch(
        dam_match_kernel,
        f"fallback={'on' if fallback else 'off'}",
        SIGNATURE,
        {"BLOCK_A": BLOCK_A, "BLOCK_G": BLOCK_G, "FALLBACK": fallback},
        NUM_WARPS,
        KERNEL_OPTIONS,
    )
    for fallback in (False, True)
)
AOT_INLINED = (_area, _iou_tile, _fold_row_max)
