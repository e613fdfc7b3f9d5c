"""AP@0.5: hand-computed cases, and agreement with faster-coco-eval (the COCO evaluator) to 1e-4.

What is compared with COCO, exactly: COCO's AP50 is the mean of the interpolated precision
``p(r) = max(precision at recall >= r)`` over a grid of recall thresholds (101 by default). Our AP is
VOC all-point, the area under the same envelope. Recall only takes the values ``k / G`` (G faces),
and the envelope is constant on each ``((k-1)/G, k/G]``, so COCO run with the recall grid
``{1/G, ..., G/G}`` computes exactly the all-point AP. Test 1 sets that grid and compares AP.
Test 2 keeps COCO's default settings (101 thresholds, maxDets large enough, area 'all') and compares
its AP50 with the 101-point interpolation of *our* precision/recall arrays, which checks the ranked
curve itself. Matching in both is COCO's greedy rule, which ours implements (IoU >= 0.5).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from faster_coco_eval import COCO, COCOeval_faster

from acfd.training.evaluation.ap import average_precision, box_iou_matrix


def scenario(seed: int, images: int = 40):
    """Random images: faces (0-6), noisy detections of most of them, duplicates, false positives.
    Some images have no faces, some faces have no detection; all boxes have positive area."""
    rng = np.random.default_rng(seed)
    gts, dets = [], []
    for _ in range(images):
        g = int(rng.integers(0, 7))
        xy = rng.uniform(0, 300, (g, 2))
        gt = np.concatenate([xy, xy + rng.uniform(8, 80, (g, 2))], axis=1)
        boxes = []
        for box in gt:
            if rng.random() < 0.8:
                side = min(box[2] - box[0], box[3] - box[1])
                boxes.append(box + rng.uniform(-0.3, 0.3, 4) * side)
            if rng.random() < 0.15:  # duplicate: at most one of them can be a true positive
                boxes.append(box + rng.uniform(-0.1, 0.1, 4) * (box[2] - box[0]))
        fp = int(rng.integers(0, 4))
        xy = rng.uniform(0, 300, (fp, 2))
        boxes.extend(np.concatenate([xy, xy + rng.uniform(8, 80, (fp, 2))], axis=1))
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1.0)
        dets.append((boxes, rng.random(len(boxes))))
        gts.append(gt)
    return dets, gts


def coco_eval(dets, gts, rec_thresholds=None):
    """faster-coco-eval at IoU 0.5, area 'all', maxDets far above the detections per image."""
    images = [{"id": i + 1, "width": 400, "height": 400, "file_name": f"{i}.png"} for i in range(len(gts))]
    annotations = []
    for i, gt in enumerate(gts):
        for x1, y1, x2, y2 in gt:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": 1,
                    "iscrowd": 0,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                }
            )
    coco_gt = COCO()
    coco_gt.dataset = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "face"}]}
    coco_gt.createIndex()
    results = [
        {"image_id": i + 1, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(s)}
        for i, (boxes, scores) in enumerate(dets)
        for (x1, y1, x2, y2), s in zip(boxes, scores)
    ]
    coco_dt = coco_gt.loadRes(results)
    evaluator = COCOeval_faster(coco_gt, coco_dt, "bbox", print_function=lambda *a, **k: None)
    evaluator.params.iouThrs = np.array([0.5])
    evaluator.params.maxDets = [1, 10, 1000]
    if rec_thresholds is not None:
        evaluator.params.recThrs = np.asarray(rec_thresholds, dtype=np.float64)
    evaluator.evaluate()
    evaluator.accumulate()
    area_all = evaluator.params.areaRngLbl.index("all")
    return float(np.mean(evaluator.eval["precision"][0, :, 0, area_all, -1]))


def interpolated_101(precision, recall):
    """COCO's 101-point interpolation of a ranked P/R curve (0 where a recall is never reached)."""
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    thresholds = np.linspace(0.0, 1.0, 101)
    idx = np.searchsorted(recall, thresholds, side="left")
    return float(np.mean([envelope[i] if i < len(envelope) else 0.0 for i in idx]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_all_point_ap_equals_coco_on_the_recall_grid_of_the_faces(seed):
    dets, gts = scenario(seed)
    ours = average_precision(dets, gts)
    assert 0.05 < ours.ap < 0.95  # a scenario that exercises the curve, not a corner
    reference = coco_eval(dets, gts, rec_thresholds=np.arange(1, ours.faces + 1) / ours.faces)
    assert ours.ap == pytest.approx(reference, abs=1e-4)


@pytest.mark.parametrize("seed", [3, 4])
def test_precision_recall_curve_gives_coco_ap50(seed):
    dets, gts = scenario(seed)
    ours = average_precision(dets, gts)
    assert interpolated_101(ours.precision, ours.recall) == pytest.approx(coco_eval(dets, gts), abs=1e-4)


def _boxes(*rows):
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def test_perfect_detections_give_one():
    gts = [_boxes([0, 0, 10, 10], [20, 20, 40, 50]), _boxes([5, 5, 15, 25])]
    dets = [(gts[0], np.array([0.9, 0.4])), (gts[1], np.array([0.7]))]
    result = average_precision(dets, gts)
    assert result.ap == 1.0
    assert result.precision.tolist() == [1.0, 1.0, 1.0]
    assert result.recall.tolist() == pytest.approx([1 / 3, 2 / 3, 1.0])


def test_no_detections_give_zero():
    gts = [_boxes([0, 0, 10, 10]), _boxes()]
    result = average_precision([(_boxes(), np.zeros(0)), (_boxes(), np.zeros(0))], gts)
    assert result.ap == 0.0 and result.faces == 1 and result.detections == 0


def test_false_positive_ranked_first_halves_ap():
    gts = [_boxes([0, 0, 10, 10])]
    dets = [(_boxes([50, 50, 60, 60], [0, 0, 10, 10]), np.array([0.9, 0.8]))]
    result = average_precision(dets, gts)
    # ranking: FP (P=0, R=0), TP (P=1/2, R=1) -> AP = 1 * 1/2
    assert result.precision.tolist() == [0.0, 0.5]
    assert result.recall.tolist() == [0.0, 1.0]
    assert result.ap == pytest.approx(0.5)


def test_detections_in_images_without_faces_are_false_positives():
    gts = [_boxes([0, 0, 10, 10]), _boxes()]
    above = [(_boxes([0, 0, 10, 10]), np.array([0.5])), (_boxes([0, 0, 10, 10]), np.array([0.9]))]
    below = [(_boxes([0, 0, 10, 10]), np.array([0.5])), (_boxes([0, 0, 10, 10]), np.array([0.1]))]
    assert average_precision(above, gts).ap == pytest.approx(0.5)
    assert average_precision(below, gts).ap == pytest.approx(1.0)


def test_interpolation_uses_the_precision_envelope():
    gts = [_boxes([0, 0, 10, 10], [20, 0, 30, 10])]
    # TP (0.9), FP (0.8), TP (0.7): P = 1, 1/2, 2/3 at R = 1/2, 1/2, 1 -> AP = 1/2 * 1 + 1/2 * 2/3
    dets = [(_boxes([0, 0, 10, 10], [50, 50, 60, 60], [20, 0, 30, 10]), np.array([0.9, 0.8, 0.7]))]
    assert average_precision(dets, gts).ap == pytest.approx(0.5 + 1 / 3)


def test_each_face_is_matched_once_and_iou_half_counts():
    gts = [_boxes([0, 0, 10, 10])]
    # second detection duplicates the first: a false positive
    dup = [(_boxes([0, 0, 10, 10], [0, 0, 10, 10]), np.array([0.9, 0.8]))]
    assert average_precision(dup, gts).true_positive.tolist() == [True, False]
    # IoU exactly 0.5 is a match, just below is not
    assert box_iou_matrix(_boxes([0, 0, 10, 5]), gts[0])[0, 0] == 0.5
    assert average_precision([(_boxes([0, 0, 10, 5]), np.array([1.0]))], gts).ap == 1.0
    assert average_precision([(_boxes([0, 0, 10, 4.9]), np.array([1.0]))], gts).ap == 0.0


def test_a_detection_takes_the_best_unmatched_face():
    gts = [_boxes([0, 0, 10, 10], [2, 0, 12, 10])]
    # det A overlaps face 0 best (IoU 1) and takes it; det B (same box as face 0) then takes face 1
    # (IoU 80/120 = 2/3 >= 0.5) instead of being a duplicate.
    dets = [(_boxes([0, 0, 10, 10], [0, 0, 10, 10]), np.array([0.9, 0.8]))]
    result = average_precision(dets, gts)
    assert result.true_positive.tolist() == [True, True]
    assert result.ap == 1.0


def test_no_faces_anywhere_is_undefined():
    result = average_precision([(_boxes([0, 0, 5, 5]), np.array([0.3]))], [_boxes()])
    assert math.isnan(result.ap) and result.faces == 0


def test_mismatched_lengths_are_an_error():
    with pytest.raises(ValueError, match="2 detection lists for 1 images"):
        average_precision([(_boxes(), np.zeros(0))] * 2, [_boxes()])
