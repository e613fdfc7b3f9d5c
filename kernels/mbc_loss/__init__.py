"""Margin binary classification (MBC) focal loss (paper section 3.5, eq. 2 and 3): one entry point.

``mbc_focal_loss(logits [B, A], labels [B, A])`` with labels from ``dam_match`` (0 negative,
1 step-1 match = psi1, 2 step-2 compensation = psi2) returns the scalar

    sum_{i not in psi2} FL_i / max(N1, 1)  +  lambda_cls * sum_{i in psi2} FL_i / max(N2, 1)

where ``N1`` / ``N2`` count label-1 / label-2 anchors over the whole batch and ``FL_i`` is the
sigmoid focal loss of the margin logit: target ``y = 1`` for labels 1 and 2, ``0`` otherwise (any
other label value counts as a negative); ``z = x - margin`` for positives, ``z = x`` for
negatives (eq. 3, margin on the logit before the sigmoid, as DESIGN.md reads it); ``FL = -a_t
(1 - p_t)^gamma log p_t`` with ``p = sigmoid(z)``, ``a_t = alpha`` for positives and
``1 - alpha`` for negatives.

Logits may be fp32, fp16 or bf16 (accumulated in fp32; the result is an fp32 scalar, the gradient
has the logits' dtype). The reference also takes float64 (float64 result, for gradcheck).
``impl``: ``"auto"`` runs the Triton kernels on CUDA tensors (fp32/fp16/bf16) and the reference
elsewhere; ``"triton"`` forces the kernels (CPU tensors only under ``TRITON_INTERPRET=1``);
``"torch"`` forces the reference. Differentiable with respect to ``logits``.
"""

from __future__ import annotations

import math

import torch

from acfd.kernels.dispatch import use_triton
from acfd.kernels.mbc_loss.reference import mbc_focal_loss_reference

KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def mbc_focal_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    margin: float = 0.2,
    alpha: float = 0.25,
    gamma: float = 2.0,
    lambda_cls: float = 0.7,
    impl: str = "auto",
) -> torch.Tensor:
    """MBC focal loss of eq. (2) with the margin of eq. (3); see the module docstring."""
    _check_inputs(logits, labels, margin, alpha, gamma, lambda_cls)
    if not use_triton(impl, logits, "mbc_focal_loss", KERNEL_DTYPES):
        return mbc_focal_loss_reference(logits, labels, margin, alpha, gamma, lambda_cls)
    from acfd.kernels.mbc_loss.triton_kernel import mbc_focal_loss_triton

    return mbc_focal_loss_triton(logits, labels, margin, alpha, gamma, lambda_cls)


def _check_inputs(logits, labels, margin, alpha, gamma, lambda_cls) -> None:
    if not isinstance(logits, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise ValueError("mbc_focal_loss: logits and labels must be tensors")
    if logits.dtype not in KERNEL_DTYPES + (torch.float64,):
        raise ValueError(f"mbc_focal_loss: logits must be fp32, fp16, bf16 (or float64), got {logits.dtype}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"mbc_focal_loss: labels must be an integer tensor (0/1/2), got {labels.dtype}")
    if logits.dim() != 2 or labels.shape != logits.shape:
        raise ValueError(
            f"mbc_focal_loss: logits and labels must both be [B, A], got {list(logits.shape)} and {list(labels.shape)}"
        )
    if labels.device != logits.device:
        raise ValueError(f"mbc_focal_loss: logits on {logits.device} but labels on {labels.device}")
    for name, value in (("margin", margin), ("alpha", alpha), ("gamma", gamma), ("lambda_cls", lambda_cls)):
        if not math.isfinite(value):
            raise ValueError(f"mbc_focal_loss: {name} must be finite, got {value!r}")
    if gamma < 0:
        raise ValueError(f"mbc_focal_loss: gamma must be >= 0, got {gamma!r}")
