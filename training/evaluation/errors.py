"""Where the AP@0.5 of a single-class detector goes: a TIDE-style error breakdown (Bolya et al., ECCV 2020).

Contract of :func:`error_breakdown` (inputs as :func:`acfd.training.evaluation.ap.average_precision`):

* Inputs per image: detections ``(boxes [D, 4], scores [D])``, ground truths ``[G, 4]``, optional
  ignore regions ``[M, 4]``; boxes ``(x1, y1, x2, y2)`` in pixels. ``t_f`` (0.5) is the match IoU,
  ``t_b`` (0.1) the background IoU.
* Matching is exactly that of ``ap.match_faces``: per image, detections in descending score order
  (stable) each take the unmatched ground truth of highest IoU if it is ``>= t_f``. An unmatched
  detection with ``>= t_f`` of its area inside one ignore region is dropped (neither TP nor FP). The
  AP reported is therefore the one of ``average_precision``.
* Each remaining false positive gets one type, first that applies, by its highest IoU ``m`` with any
  ground truth of its image: *duplicate* if ``m >= t_f`` (that face was taken by a higher-scoring
  detection, or greedy matching would have given it to this one); *localisation* if ``t_b <= m < t_f``,
  its target being the face of highest IoU (first on ties); *background* if ``m < t_b`` (or no faces).
  A face is *missed* when no detection matched it and it is the target of no localisation error.
  There is no classification (so no "both") error: one class.
* dAP of a type = AP with only that type fixed (an oracle) minus AP, with ap.py's all-point rule:
  - localisation: per image in score order, a localisation error becomes a true positive of its target
    when that face was matched by no detection (of any score) and not already given to a higher-scoring
    fixed error; otherwise it is removed (it would be a duplicate);
  - duplicate / background: those detections are removed;
  - missed: the missed faces leave the face count (the recall's denominator). TIDE phrases this oracle
    as finding them at the top of the ranking; we take the removal;
  - the two special figures: ``fp_dap`` removes every false positive; ``fn_dap`` removes every face
    no detection matched (missed or localisation target) from the face count.
  An oracle that leaves no face to find (a row where nothing was found) scores 1 when it also leaves no
  detection and 0 otherwise; so with no detections at all AP = 0, every face is missed and
  ``dap["missed"] = fn_dap = 1``. A row with no faces has AP NaN and every dAP NaN (counts stay).
* By face size (:func:`breakdown_by_size`), COCO's area-range rule with side = sqrt(w * h): the types
  above are decided once, over all faces; the row for ``[lo, hi)`` then counts only faces of side in
  the range, drops detections matched to faces outside it (they are neither hit nor miss), and drops
  false positives whose own side is outside it. In a row, a localisation error whose target is outside
  the range is removed by its fix. Missed counts add up over the bins; ``"all"`` is the unrestricted row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from acfd.training.evaluation.ap import SIZE_BINS, all_point_ap, box_iof_matrix, box_iou_matrix, box_side

ERROR_TYPES = ("missed", "localisation", "duplicate", "background")

# kinds of detections
_TP, _DUPE, _LOC, _BKG, _DROPPED = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class ErrorBreakdown:
    """One row: AP, faces and kept detections, counts per type (``missed`` counts faces, the others
    detections), dAP per type, and the two special oracles (all FP removed, all unmatched faces removed)."""

    ap: float
    faces: int
    detections: int
    counts: dict[str, int] = field(default_factory=dict)
    dap: dict[str, float] = field(default_factory=dict)
    fp_dap: float = math.nan
    fn_dap: float = math.nan

    def to_dict(self) -> dict:
        """JSON-ready: NaN becomes ``None``."""
        out = asdict(self)
        clean = lambda v: None if isinstance(v, float) and not math.isfinite(v) else v  # noqa: E731
        out["ap"], out["fp_dap"], out["fn_dap"] = clean(self.ap), clean(self.fp_dap), clean(self.fn_dap)
        out["dap"] = {k: clean(v) for k, v in self.dap.items()}
        return out


@dataclass(frozen=True)
class _Labelled:
    """Every detection and face of the set, labelled once (detections in ap.py's concatenation order)."""

    score: np.ndarray  # [N] float64
    kind: np.ndarray  # [N] int: _TP, _DUPE, _LOC, _BKG, _DROPPED
    image: np.ndarray  # [N] int: the detection's image (index into the inputs)
    box: np.ndarray  # [N, 4] float64
    side: np.ndarray  # [N] the detection's own sqrt(w * h)
    face: np.ndarray  # [N] global index of the matched face (TP) or the target (localisation), else -1
    loc_fixable: np.ndarray  # [N] bool: the localisation fix turns it into a TP of ``face``
    face_side: np.ndarray  # [F]
    face_matched: np.ndarray  # [F] bool
    face_missed: np.ndarray  # [F] bool


def _label(detections, ground_truths, ignores, t_f: float, t_b: float) -> _Labelled:
    if len(detections) != len(ground_truths) or (ignores is not None and len(ignores) != len(detections)):
        raise ValueError(f"error_breakdown: {len(detections)} detection lists for {len(ground_truths)} images")
    keys = ("score", "kind", "image", "box", "side", "face", "fix", "fside", "fmatched", "fmissed")
    cols: dict[str, list] = {k: [] for k in keys}
    offset = 0
    for i, ((boxes, scores), gt) in enumerate(zip(detections, ground_truths)):
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        order = np.argsort(-scores, kind="stable")
        scores, boxes = scores[order], np.asarray(boxes, dtype=np.float64).reshape(-1, 4)[order]
        gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
        n, g = scores.shape[0], gt.shape[0]
        iou = box_iou_matrix(boxes, gt) if n and g else np.zeros((n, g))
        kind = np.full(n, _BKG)
        face = np.full(n, -1)
        taken = np.zeros(g, dtype=bool)
        for d in range(n):  # the greedy rule of ap.match_faces
            candidates = np.where(taken, -1.0, iou[d]) if g else np.zeros(0)
            if g and candidates.max() >= t_f:
                best = int(np.argmax(candidates))
                taken[best], kind[d], face[d] = True, _TP, best
        ignore = None if ignores is None else np.asarray(ignores[i], dtype=np.float64).reshape(-1, 4)
        if ignore is not None and ignore.shape[0] and n:
            kind[(kind != _TP) & (box_iof_matrix(boxes, ignore).max(axis=1) >= t_f)] = _DROPPED
        fixable = np.zeros(n, dtype=bool)
        targeted = np.zeros(g, dtype=bool)
        claimed = taken.copy()
        for d in np.flatnonzero((kind != _TP) & (kind != _DROPPED)):
            best_iou = iou[d].max() if g else 0.0
            if best_iou >= t_f:
                kind[d] = _DUPE
            elif best_iou >= t_b:
                kind[d], face[d] = _LOC, int(np.argmax(iou[d]))
                targeted[face[d]] = True
                fixable[d] = not claimed[face[d]]
                claimed[face[d]] = True
        cols["score"].append(scores)
        cols["kind"].append(kind)
        cols["image"].append(np.full(n, i))
        cols["box"].append(boxes)
        cols["side"].append(box_side(boxes))
        cols["face"].append(np.where(face >= 0, face + offset, -1))
        cols["fix"].append(fixable)
        cols["fside"].append(box_side(gt))
        cols["fmatched"].append(taken)
        cols["fmissed"].append(~taken & ~targeted)
        offset += g
    cat = {k: np.concatenate(v) if v else np.zeros(0) for k, v in cols.items()}
    return _Labelled(
        score=cat["score"].astype(np.float64),
        kind=cat["kind"].astype(int),
        image=cat["image"].astype(int),
        box=cat["box"].astype(np.float64).reshape(-1, 4),
        side=cat["side"].astype(np.float64),
        face=cat["face"].astype(int),
        loc_fixable=cat["fix"].astype(bool),
        face_side=cat["fside"].astype(np.float64),
        face_matched=cat["fmatched"].astype(bool),
        face_missed=cat["fmissed"].astype(bool),
    )


def _ap(scores: np.ndarray, tp: np.ndarray, faces: int) -> float:
    """ap.py's ranking and all-point AP; with no faces, 1 if nothing is left to rank, else 0."""
    if faces == 0:
        return 1.0 if tp.size == 0 else 0.0
    order = np.argsort(-scores, kind="stable")
    tp_cum = np.cumsum(tp[order], dtype=np.float64)
    return all_point_ap(tp_cum / np.arange(1, tp.size + 1, dtype=np.float64), tp_cum / faces)


def _row(lab: _Labelled, lo: float = 0.0, hi: float = math.inf) -> ErrorBreakdown:
    in_range = (lab.face_side >= lo) & (lab.face_side < hi)
    face_in = np.append(in_range, False)[lab.face]  # index -1 reads the appended False
    is_fp = (lab.kind == _DUPE) | (lab.kind == _LOC) | (lab.kind == _BKG)
    keep = np.where(lab.kind == _TP, face_in, is_fp & (lab.side >= lo) & (lab.side < hi))
    score, kind = lab.score[keep], lab.kind[keep]
    tp = kind == _TP
    faces = int(in_range.sum())
    missed = int((in_range & lab.face_missed).sum())
    counts = {
        "missed": missed,
        "localisation": int((kind == _LOC).sum()),
        "duplicate": int((kind == _DUPE).sum()),
        "background": int((kind == _BKG).sum()),
        "true_positive": int(tp.sum()),
    }
    if faces == 0:
        nan = math.nan
        return ErrorBreakdown(nan, 0, int(keep.sum()), counts, dict.fromkeys(ERROR_TYPES, nan), nan, nan)
    ap = _ap(score, tp, faces)
    loc_tp = (kind == _LOC) & lab.loc_fixable[keep] & face_in[keep]
    loc_keep = (kind != _LOC) | loc_tp
    fixed = {
        "missed": _ap(score, tp, faces - missed),
        "localisation": _ap(score[loc_keep], (tp | loc_tp)[loc_keep], faces),
        "duplicate": _ap(score[kind != _DUPE], tp[kind != _DUPE], faces),
        "background": _ap(score[kind != _BKG], tp[kind != _BKG], faces),
    }
    return ErrorBreakdown(
        ap=ap,
        faces=faces,
        detections=int(keep.sum()),
        counts=counts,
        dap={k: v - ap for k, v in fixed.items()},
        fp_dap=_ap(score[tp], tp[tp], faces) - ap,
        fn_dap=_ap(score, tp, int(tp.sum())) - ap,
    )


def error_breakdown(
    detections: Sequence[tuple[np.ndarray, np.ndarray]],
    ground_truths: Sequence[np.ndarray],
    ignores: Sequence[np.ndarray] | None = None,
    size_range: tuple[float, float] = (0.0, math.inf),
    t_f: float = 0.5,
    t_b: float = 0.1,
) -> ErrorBreakdown:
    """The breakdown over all images, restricted to faces of side in ``[size_range[0], size_range[1])``."""
    return _row(_label(detections, ground_truths, ignores, t_f, t_b), *size_range)


def breakdown_by_size(
    detections: Sequence[tuple[np.ndarray, np.ndarray]],
    ground_truths: Sequence[np.ndarray],
    ignores: Sequence[np.ndarray] | None = None,
    bins: Sequence[tuple[float, float]] = tuple((lo, hi) for _, lo, hi in SIZE_BINS),
    t_f: float = 0.5,
    t_b: float = 0.1,
) -> dict[str, ErrorBreakdown]:
    """Rows ``"all"`` and one per bin, named ``"<hi"``, ``"lo-hi"`` or ``">=lo"`` (e.g. ``"32-96"``)."""
    lab = _label(detections, ground_truths, ignores, t_f, t_b)
    rows = {"all": _row(lab)}
    for lo, hi in bins:
        name = f"<{hi:g}" if lo <= 0 else f">={lo:g}" if math.isinf(hi) else f"{lo:g}-{hi:g}"
        rows[name] = _row(lab, lo, hi)
    return rows


def background_detections(
    detections: Sequence[tuple[np.ndarray, np.ndarray]],
    ground_truths: Sequence[np.ndarray],
    ignores: Sequence[np.ndarray] | None = None,
    t_f: float = 0.5,
    t_b: float = 0.1,
    min_score: float = 0.0,
) -> list[tuple[float, int, np.ndarray]]:
    """The *background* errors of the breakdown, ``(score, image index, box)``, scoring at least
    ``min_score``, highest score first (ties: image order, then their order in the image): the
    detections the ``background`` oracle removes, labelled by the same rule (``_label``)."""
    lab = _label(detections, ground_truths, ignores, t_f, t_b)
    picked = np.flatnonzero((lab.kind == _BKG) & (lab.score >= min_score))
    picked = picked[np.argsort(-lab.score[picked], kind="stable")]  # concatenation order breaks ties
    return [(float(lab.score[k]), int(lab.image[k]), lab.box[k]) for k in picked]


def format_error_table(rows: dict[str, ErrorBreakdown]) -> list[str]:
    """Aligned text lines: AP and dAP in AP points (x100), '-' where undefined; then the counts."""
    head = ("row", "faces", "AP", "miss", "loc", "dupe", "bkg", "FP", "FN", "#miss", "#loc", "#dupe", "#bkg", "#dets")

    def pts(v: float) -> str:
        return f"{100 * v:.2f}" if math.isfinite(v) else "-"

    table = [head]
    for name, r in rows.items():
        dap = [pts(r.dap.get(k, math.nan)) for k in ERROR_TYPES]
        counts = [str(r.counts.get(k, 0)) for k in ERROR_TYPES]
        table.append((name, str(r.faces), pts(r.ap), *dap, pts(r.fp_dap), pts(r.fn_dap), *counts, str(r.detections)))
    widths = [max(len(line[c]) for line in table) for c in range(len(head))]
    return [
        "  ".join(cell.ljust(w) if c == 0 else cell.rjust(w) for c, (cell, w) in enumerate(zip(line, widths)))
        for line in table
    ]
