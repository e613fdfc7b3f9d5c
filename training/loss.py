"""Loss assembly of paper eq. (1)-(2): DAM labels, smooth-L1 regression, MBC focal classification.

``DetectionLoss(cfg)(cls_logits, box_deltas, anchors, gt_boxes, gt_count[, ignore_boxes, ignore_count]) -> LossParts``

1. The predicted boxes are decoded from the (detached) deltas: DAM's second step matches on what the
   network regresses now, and no gradient flows through the matching.
2. ``dam_match`` (kernels package) labels every anchor 0 (negative), 1 (psi1: matched by anchor IoU
   >= T1) or 2 (psi2: compensated, its regressed box has IoU > T2 with a face) and names its face.
3. Regression: smooth-L1 between the deltas and ``BoxCoder.encode(matched face, anchor)``, summed over
   the 4 offsets, ``sum_psi1 / N1 + lambda_reg * sum_psi2 / N2``.
4. Classification: ``mbc_focal_loss`` (kernels package), which applies the margin and the same
   N1 / N2 / lambda_cls weighting.

N1 and N2 count anchors over the whole batch (not per image); a zero count contributes nothing
(the sum over an empty set is 0, divided by max(N, 1)).

Ignore regions (``ignore_boxes [B, M, 4]`` padded, ``ignore_count [B]``; COCO crowd, VOC difficult)
are neither faces nor background. An anchor DAM leaves negative is *ignored* when DAM would have
matched it to an ignore region had that region been a face (``dam_match`` run on the ignore regions:
anchor IoU >= T1, or regressed-box IoU > T2), or when at least ``ignore_iof`` (0.5) of its own area
lies inside one (how a small anchor inside a crowd region is caught). Face matches take precedence.
Ignored anchors are left out of the classification loss: their logit is replaced, without gradient,
by ``IGNORED_LOGIT`` with label 0, whose focal loss is exactly 0 in both implementations (so the
kernels are unchanged); they take no part in the regression loss and are not counted in N1 or N2.

``TrainConfig.psi2_norm``: ``"n2"`` (default, the paper) divides the psi2 sums by N2;
``"max_n1_n2"`` divides them by ``max(N1, N2)``. Early in training DAM compensates only a handful
of anchors per batch (N2 = 1..5 against N1 ~ 300), so under ``"n2"`` each psi2 anchor weighs
~100x a psi1 anchor in both losses; a freshly initialised network scores it as background, and
the concentrated gradient shows as spikes (backbone gradient norm 10-100x, loss above its start)
that stall a short CPU run. ``max_n1_n2`` equals the paper's rule once N2 >= N1. It is applied
by scaling ``lambda_reg`` / ``lambda_cls`` by ``N2 / max(N1, N2)``, so the kernels are unchanged.
Everything is computed in float32, also under autocast. ``total = cls + reg``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from acfd.inference.box_coder import BoxCoder
from acfd.kernels.dispatch import IMPLS
from acfd.training.config import TrainConfig

PSI2_NORMS = ("n2", "max_n1_n2")
PSI1, PSI2 = 1, 2
IGNORED_LOGIT = -1.0e4  # sigmoid is 0.0 in fp32: a negative with zero focal loss and zero gradient


@dataclass
class LossParts:
    """The loss and the parts a training log shows. ``total`` carries the gradient."""

    total: torch.Tensor
    cls: torch.Tensor
    reg: torch.Tensor
    n1: int
    n2: int
    ignored: int = 0  # anchors left out for ignore regions

    def as_floats(self) -> dict[str, float]:
        return {
            "loss": float(self.total.detach()),
            "cls": float(self.cls),
            "reg": float(self.reg),
            "n1": self.n1,
            "n2": self.n2,
        }


def regression_loss(
    box_deltas: torch.Tensor,
    target_deltas: torch.Tensor,
    labels: torch.Tensor,
    lambda_reg: float,
    beta: float = 1.0,
) -> tuple[torch.Tensor, int, int]:
    """``sum_psi1 smoothL1 / N1 + lambda_reg * sum_psi2 smoothL1 / N2`` (eq. 1) and ``(N1, N2)``.

    ``box_deltas`` and ``target_deltas`` are ``[B, A, 4]``, ``labels`` ``[B, A]`` with 1 = psi1,
    2 = psi2; targets of other anchors are ignored (they must be finite).
    """
    psi1 = labels == PSI1
    psi2 = labels == PSI2
    n1, n2 = int(psi1.sum()), int(psi2.sum())
    pos = psi1 | psi2
    per_anchor = F.smooth_l1_loss(box_deltas[pos], target_deltas[pos], reduction="none", beta=beta).sum(-1)
    pos_labels = labels[pos]
    sum1 = per_anchor[pos_labels == PSI1].sum()
    sum2 = per_anchor[pos_labels == PSI2].sum()
    # an empty psi set sums to 0 and stays in the graph (zero gradient), so DDP sees every parameter
    reg = sum1 / max(n1, 1) + lambda_reg * sum2 / max(n2, 1)
    return reg, n1, n2


def anchor_iof(anchors: torch.Tensor, regions: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """``[B, A]``: the largest fraction of each anchor's area inside one of its image's regions
    (``regions [B, M, 4]``, the first ``count[b]`` rows valid); 0 without regions or for empty anchors."""
    a = anchors[None, :, None, :]
    r = regions[:, None, :, :]
    w = (torch.minimum(a[..., 2], r[..., 2]) - torch.maximum(a[..., 0], r[..., 0])).clamp(min=0)
    h = (torch.minimum(a[..., 3], r[..., 3]) - torch.maximum(a[..., 1], r[..., 1])).clamp(min=0)
    area = ((anchors[:, 2] - anchors[:, 0]).clamp(min=0) * (anchors[:, 3] - anchors[:, 1]).clamp(min=0))[None, :, None]
    iof = torch.where(area > 0, w * h / area.clamp(min=1e-12), torch.zeros_like(w))
    valid = (
        torch.arange(regions.shape[1], device=regions.device)[None, None, :] < count.to(regions.device)[:, None, None]
    )
    iof = torch.where(valid, iof, torch.zeros_like(iof))
    return iof.amax(dim=-1) if regions.shape[1] else iof.new_zeros(iof.shape[:2])


class DetectionLoss:
    """The training loss of one step; configured once from the preset's ``train`` section."""

    def __init__(
        self,
        cfg: TrainConfig,
        kernels: str = "auto",
        box_coder: BoxCoder | None = None,
        beta: float = 1.0,
        ignore_iof: float = 0.5,
    ):
        if kernels not in IMPLS:
            raise ValueError(f"kernels must be one of {IMPLS}, not {kernels!r}")
        if cfg.psi2_norm not in PSI2_NORMS:
            raise ValueError(f"train.psi2_norm must be one of {PSI2_NORMS}, not {cfg.psi2_norm!r}")
        self.cfg = cfg
        self.kernels = kernels
        self.coder = box_coder or BoxCoder()
        self.beta = beta
        self.ignore_iof = ignore_iof

    def __call__(
        self,
        cls_logits: torch.Tensor,
        box_deltas: torch.Tensor,
        anchors: torch.Tensor,
        gt_boxes: torch.Tensor,
        gt_count: torch.Tensor,
        ignore_boxes: torch.Tensor | None = None,
        ignore_count: torch.Tensor | None = None,
    ) -> LossParts:
        from acfd.kernels.dam_match import dam_match
        from acfd.kernels.mbc_loss import mbc_focal_loss

        cfg = self.cfg
        cls_logits = cls_logits.float()
        box_deltas = box_deltas.float()
        anchors = anchors.float()
        gt_boxes = gt_boxes.float()
        with torch.no_grad():
            pred_boxes = self.coder.decode(box_deltas.detach(), anchors)
            match = dam_match(anchors, pred_boxes, gt_boxes, gt_count, cfg.t1, cfg.t2, impl=self.kernels)
            labels = match.labels
            target_deltas = self._targets(match.gt_index, gt_boxes, anchors)
            n1, n2 = int((labels == PSI1).sum()), int((labels == PSI2).sum())
            ignored = self.ignored_anchors(labels, anchors, pred_boxes, ignore_boxes, ignore_count)
        n_ignored = 0
        if ignored is not None:
            n_ignored = int(ignored.sum())
            cls_logits = torch.where(ignored, torch.full_like(cls_logits, IGNORED_LOGIT), cls_logits)
        psi2_scale = n2 / max(n1, n2, 1) if cfg.psi2_norm == "max_n1_n2" and n2 > 0 else 1.0
        reg, n1, n2 = regression_loss(box_deltas, target_deltas, labels, cfg.lambda_reg * psi2_scale, self.beta)
        cls = mbc_focal_loss(
            cls_logits,
            labels,
            margin=cfg.margin,
            alpha=cfg.focal_alpha,
            gamma=cfg.focal_gamma,
            lambda_cls=cfg.lambda_cls * psi2_scale,
            impl=self.kernels,
        )
        return LossParts(total=cls + reg, cls=cls.detach(), reg=reg.detach(), n1=n1, n2=n2, ignored=n_ignored)

    def ignored_anchors(
        self,
        labels: torch.Tensor,
        anchors: torch.Tensor,
        pred_boxes: torch.Tensor,
        ignore_boxes: torch.Tensor | None,
        ignore_count: torch.Tensor | None,
    ) -> torch.Tensor | None:
        """``[B, A]`` bool: negatives left out for the ignore regions (see the module docstring); None without any."""
        from acfd.kernels.dam_match import dam_match

        if ignore_boxes is None or ignore_boxes.shape[1] == 0 or ignore_count is None or int(ignore_count.max()) == 0:
            return None
        ignore_boxes = ignore_boxes.float()
        would_match = (
            dam_match(
                anchors, pred_boxes, ignore_boxes, ignore_count, self.cfg.t1, self.cfg.t2, impl=self.kernels
            ).labels
            > 0
        )
        inside = anchor_iof(anchors, ignore_boxes, ignore_count) >= self.ignore_iof
        return (labels == 0) & (would_match | inside)

    def _targets(self, gt_index: torch.Tensor, gt_boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """Encoded offsets ``[B, A, 4]`` of each anchor's matched face (negatives get a dummy box)."""
        batch, num_anchors = gt_index.shape
        if gt_boxes.shape[1] == 0:
            return torch.zeros(batch, num_anchors, 4, device=anchors.device)
        idx = gt_index.clamp(min=0).unsqueeze(-1).expand(batch, num_anchors, 4)
        matched = torch.gather(gt_boxes, 1, idx)
        # negatives point at face 0 (or a zero padding row): give them their anchor to stay finite
        neg = (gt_index < 0).unsqueeze(-1)
        matched = torch.where(neg, anchors.unsqueeze(0).expand_as(matched), matched)
        return self.coder.encode(matched, anchors.unsqueeze(0))
