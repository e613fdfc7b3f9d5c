"""PyTorch reference of the margin binary classification (MBC) focal loss, paper eq. (2) and (3).

Written the plain way (sigmoid, binary cross-entropy with logits, ``(1 - p_t) ** gamma``) so that
autograd, not a hand-derived formula, gives its gradient: the Triton kernel's analytic gradient
is checked against it, and it is itself checked with ``torch.autograd.gradcheck`` in float64.

The contract is stated once, in ``acfd.kernels.mbc_loss`` (``__init__.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def mbc_focal_loss_reference(
    logits: torch.Tensor,
    labels: torch.Tensor,
    margin: float = 0.2,
    alpha: float = 0.25,
    gamma: float = 2.0,
    lambda_cls: float = 0.7,
) -> torch.Tensor:
    """Scalar MBC focal loss; fp16 / bf16 / fp32 logits are computed in fp32, float64 stays float64."""
    compute = torch.float64 if logits.dtype == torch.float64 else torch.float32
    x = logits.to(compute)
    positive = (labels == 1) | (labels == 2)
    compensated = labels == 2
    y = positive.to(compute)
    z = x - margin * y  # eq. (3): the margin is taken off the positives' logit before the sigmoid
    p = torch.sigmoid(z)
    ce = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    alpha_t = alpha * y + (1 - alpha) * (1 - y)
    per_anchor = alpha_t * (1 - p_t) ** gamma * ce
    n1 = (labels == 1).sum().clamp(min=1)
    n2 = compensated.sum().clamp(min=1)
    zero = torch.zeros((), dtype=compute, device=x.device)
    sum_psi2 = torch.where(compensated, per_anchor, zero).sum()
    sum_rest = torch.where(compensated, zero, per_anchor).sum()
    return sum_rest / n1 + lambda_cls * sum_psi2 / n2
