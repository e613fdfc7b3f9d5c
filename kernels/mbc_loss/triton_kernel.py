"""OpenAI Triton kernels for the MBC focal loss, wrapped in a ``torch.autograd.Function``.

Per anchor, with ``pos = label in {1, 2}``, ``z = x - margin`` for positives and ``x`` otherwise,
``t = -z`` for positives and ``z`` otherwise (so ``q = sigmoid(t) = 1 - p_t``):

    loss = a_t * q^gamma * softplus(t)
    dloss/dx = a_t * s * q^gamma * (gamma * (1 - q) * softplus(t) + q),   s = -1 if pos else +1

(using ``p (1 - p) = q (1 - q)``; ``log q = -softplus(-t)`` keeps ``q^gamma`` finite for any
gamma >= 0). ``softplus`` uses ``log1p`` through the ``log(u) * e / (u - 1)`` identity, so the
easy anchors' tiny losses are not rounded to 0.

Launches (no host synchronisation anywhere, so it can sit inside a CUDA graph):

1. ``mbc_focal_forward_kernel``: one pass over logits and labels; each program writes its block's
   partial sums (loss outside psi2, loss in psi2) and counts (N1, N2) to a ``[2, nblocks]`` buffer.
2. ``mbc_focal_finalize_kernel``: one program reduces the partials in a fixed order (deterministic,
   unlike float atomics), writes the scalar loss and the two normalisers ``1 / max(N1, 1)`` and
   ``lambda_cls / max(N2, 1)``.
3. ``mbc_focal_backward_kernel``: recomputes the per-anchor gradient from logits and labels and
   scales it by the normaliser and the incoming gradient (read from device memory).

Fused-forward-saving-the-gradient vs recompute: the normalisers depend on N1 and N2, known only
after the whole forward reduction, so a fused forward could only save the *unnormalised* gradient
(4 bytes per anchor written in forward, read back in backward). Recompute reads the logits again
instead (2 or 4 bytes) and writes nothing extra: forward+backward moves 2 x (logit + label) +
grad bytes instead of (logit + label + 4) + (4 + label + grad), and keeps no ``[B, A]`` fp32 buffer
alive between forward and backward. The loss is memory-bound (a few transcendentals per 10-20
bytes), so recomputing the math costs nothing measurable; both variants launch three kernels.
We chose recompute; a CPU benchmark cannot measure this, the argument is the byte count.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from acfd.kernels.aot import AotLaunch, triton_type
from acfd.kernels.mbc_loss import KERNEL_DTYPES as LOGIT_DTYPES

# Launch parameters (AOT_LAUNCHES below lists every configuration the wrapper launches with them;
# the AOT test compiles each for sm_80 and sm_90). Labels reach the kernels as int64, the incoming
# gradient as fp32, logits (and their gradient) as one of LOGIT_DTYPES.
BLOCK = 1024
FINAL_BLOCK = 1024
NUM_WARPS = 4
LABEL_DTYPE = torch.int64
KERNEL_OPTIONS = {"enable_fp_fusion": True}  # Triton 3.9's default, pinned (3.10 changes it)


@triton.jit
def _focal_terms(x, pos, margin, alpha, gamma):
    """Per-anchor ``(loss, dloss/dx)`` in fp32 for logits ``x`` (fp32) and positive mask ``pos``."""
    z = tl.where(pos, x - margin, x)
    t = tl.where(pos, -z, z)
    e = tl.exp(-tl.abs(t))
    u = 1.0 + e
    log1p_e = tl.where(u == 1.0, e, tl.log(u) * (e / tl.where(u == 1.0, 1.0, u - 1.0)))
    softplus_t = tl.maximum(t, 0.0) + log1p_e
    log_q = -(tl.maximum(-t, 0.0) + log1p_e)
    q = tl.exp(log_q)
    q_gamma = tl.exp(gamma * log_q)
    alpha_t = tl.where(pos, alpha, 1.0 - alpha)
    loss = alpha_t * q_gamma * softplus_t
    sign = tl.where(pos, -1.0, 1.0)
    grad = alpha_t * sign * q_gamma * (gamma * (1.0 - q) * softplus_t + q)
    return loss, grad


@triton.jit
def mbc_focal_forward_kernel(
    logits_ptr,
    labels_ptr,
    part_loss_ptr,
    part_count_ptr,
    n,
    nblocks,
    margin,
    alpha,
    gamma,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(logits_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    label = tl.load(labels_ptr + offs, mask=mask, other=0)
    is1 = label == 1
    is2 = label == 2
    loss, _ = _focal_terms(x, is1 | is2, margin, alpha, gamma)
    loss = tl.where(mask, loss, 0.0)
    tl.store(part_loss_ptr + pid, tl.sum(tl.where(is2, 0.0, loss), 0))
    tl.store(part_loss_ptr + nblocks + pid, tl.sum(tl.where(is2, loss, 0.0), 0))
    tl.store(part_count_ptr + pid, tl.sum(is1.to(tl.int32), 0))
    tl.store(part_count_ptr + nblocks + pid, tl.sum(is2.to(tl.int32), 0))


@triton.jit
def mbc_focal_finalize_kernel(
    part_loss_ptr,
    part_count_ptr,
    loss_ptr,
    scale_ptr,
    nblocks,
    lambda_cls,
    BLOCK: tl.constexpr,
):
    acc1 = tl.zeros([BLOCK], tl.float32)
    acc2 = tl.zeros([BLOCK], tl.float32)
    cnt1 = tl.zeros([BLOCK], tl.int32)
    cnt2 = tl.zeros([BLOCK], tl.int32)
    for start in range(0, nblocks, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        mask = offs < nblocks
        acc1 += tl.load(part_loss_ptr + offs, mask=mask, other=0.0)
        acc2 += tl.load(part_loss_ptr + nblocks + offs, mask=mask, other=0.0)
        cnt1 += tl.load(part_count_ptr + offs, mask=mask, other=0)
        cnt2 += tl.load(part_count_ptr + nblocks + offs, mask=mask, other=0)
    n1 = tl.maximum(tl.sum(cnt1, 0), 1).to(tl.float32)
    n2 = tl.maximum(tl.sum(cnt2, 0), 1).to(tl.float32)
    tl.store(loss_ptr, tl.sum(acc1, 0) / n1 + lambda_cls * tl.sum(acc2, 0) / n2)
    tl.store(scale_ptr, 1.0 / n1)
    tl.store(scale_ptr + 1, lambda_cls / n2)


@triton.jit
def mbc_focal_backward_kernel(
    logits_ptr,
    labels_ptr,
    scale_ptr,
    grad_out_ptr,
    grad_ptr,
    n,
    margin,
    alpha,
    gamma,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(logits_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    label = tl.load(labels_ptr + offs, mask=mask, other=0)
    is2 = label == 2
    _, grad = _focal_terms(x, (label == 1) | is2, margin, alpha, gamma)
    upstream = tl.load(grad_out_ptr).to(tl.float32)
    scale = tl.where(is2, tl.load(scale_ptr + 1), tl.load(scale_ptr)) * upstream
    tl.store(grad_ptr + offs, (grad * scale).to(grad_ptr.dtype.element_ty), mask=mask)


class MbcFocalLossTriton(torch.autograd.Function):
    """Forward: kernels 1 + 2; backward: kernel 3 (recompute). Inputs are validated by the caller."""

    @staticmethod
    def forward(ctx, logits, labels, margin, alpha, gamma, lambda_cls):
        logits = logits.contiguous()
        labels = labels.to(LABEL_DTYPE).contiguous()
        n = logits.numel()
        nblocks = max(triton.cdiv(n, BLOCK), 1)
        part_loss = torch.empty(2 * nblocks, dtype=torch.float32, device=logits.device)
        part_count = torch.empty(2 * nblocks, dtype=torch.int32, device=logits.device)
        loss = torch.empty((), dtype=torch.float32, device=logits.device)
        scale = torch.empty(2, dtype=torch.float32, device=logits.device)
        mbc_focal_forward_kernel[(nblocks,)](
            logits,
            labels,
            part_loss,
            part_count,
            n,
            nblocks,
            margin,
            alpha,
            gamma,
            BLOCK=BLOCK,
            num_warps=NUM_WARPS,
            **KERNEL_OPTIONS,
        )
        mbc_focal_finalize_kernel[(1,)](
            part_loss,
            part_count,
            loss,
            scale,
            nblocks,
            lambda_cls,
            BLOCK=FINAL_BLOCK,
            num_warps=NUM_WARPS,
            **KERNEL_OPTIONS,
        )
        ctx.save_for_backward(logits, labels, scale)
        ctx.constants = (margin, alpha, gamma)
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        logits, labels, scale = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None, None
        margin, alpha, gamma = ctx.constants
        n = logits.numel()
        grad = torch.empty_like(logits)
        grid = (max(triton.cdiv(n, BLOCK), 1),)
        mbc_focal_backward_kernel[grid](
            logits,
            labels,
            scale,
            grad_out.float().contiguous(),
            grad,
            n,
            margin,
            alpha,
            gamma,
            BLOCK=BLOCK,
            num_warps=NUM_WARPS,
            **KERNEL_OPTIONS,
        )
        return grad, None, None, None, None, None


def mbc_focal_loss_triton(
    logits: torch.Tensor, labels: torch.Tensor, margin: float, alpha: float, gamma: float, lambda_cls: float
) -> torch.Tensor:
    return MbcFocalLossTriton.apply(logits, labels, float(margin), float(alpha), float(gamma), float(lambda_cls))


# ---------------------------------------------------------------- ahead-of-time table (kernels/aot.py)

_SCALARS = {"margin": "fp32", "alpha": "fp32", "gamma": "fp32"}
_LABELS = triton_type(LABEL_DTYPE)


def _forward(dtype):
    signature = {
        "logits_ptr": triton_type(dtype),
        "labels_ptr": _LABELS,
        "part_loss_ptr": "*fp32",
        "part_count_ptr": "*i32",
        "n": "i32",
        "nblocks": "i32",
        **_SCALARS,
    }
    return AotLaunch(
        mbc_focal_forward_kernel, triton_type(dtype)[1:], signature, {"BLOCK": BLOCK}, NUM_WARPS, KERNEL_OPTIONS
    )


def _backward(dtype):
    signature = {
        "logits_ptr": triton_type(dtype),
        "labels_ptr": _LABELS,
        "scale_ptr": "*fp32",
        "grad_out_ptr": "*fp32",
        "grad_ptr": triton_type(dtype),
        "n": "i32",
        **_SCALARS,
    }
    return AotLaunch(
        mbc_focal_backward_kernel, triton_type(dtype)[1:], signature, {"BLOCK": BLOCK}, NUM_WARPS, KERNEL_OPTIONS
    )


_FINALIZE = AotLaunch(
    mbc_focal_finalize_kernel,
    "fp32",
    {
        "part_loss_ptr": "*fp32",
        "part_count_ptr": "*i32",
        "loss_ptr": "*fp32",
        "scale_ptr": "*fp32",
        "nblocks": "i32",
        "lambda_cls": "fp32",
    },
    {"BLOCK": FINAL_BLOCK},
    NUM_WARPS,
    KERNEL_OPTIONS,
)
AOT_LAUNCHES = (*map(_forward, LOGIT_DTYPES), _FINALIZE, *map(_backward, LOGIT_DTYPES))
AOT_INLINED = (_focal_terms,)
