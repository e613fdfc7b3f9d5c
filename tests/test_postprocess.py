"""Post-processing of section 4.1: threshold, top-k per scale, per-axis mapping back, clipping, NMS, top-100."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from acfd.inference.config import InferenceConfig
from acfd.inference.postprocess import finalize, postprocess, select_per_scale


def test_threshold_is_strict_and_output_sorted():
    scores = np.array([0.08, 0.5, 0.081, 0.0, 0.9, 0.5], np.float32)
    boxes = np.arange(24, dtype=np.float32).reshape(6, 4)
    kept_scores, kept_boxes = select_per_scale(scores, boxes, 0.08, 1000)
    assert kept_scores.tolist() == pytest.approx([0.9, 0.5, 0.5, 0.081])
    # equal scores keep anchor order: anchor 1 before anchor 5
    assert kept_boxes[:, 0].tolist() == [16, 4, 20, 8]


def test_topk_keeps_the_highest():
    rng = np.random.default_rng(0)
    scores = rng.random(5000).astype(np.float32)
    boxes = rng.random((5000, 4)).astype(np.float32)
    kept_scores, kept_boxes = select_per_scale(scores, boxes, 0.08, 1000)
    expected = np.sort(scores[scores > 0.08])[::-1][:1000]
    assert np.array_equal(kept_scores, expected)
    assert np.array_equal(kept_boxes, boxes[np.argsort(-scores, kind="stable")[:1000]])


def test_boxes_map_back_per_axis_and_clip():
    # Image 200 wide x 100 high, network input 640 x 640: x divided by 3.2, y by 6.4.
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    boxes = np.array(
        [
            [64, 64, 320, 320],  # -> (20, 10, 100, 50)
            [-32, 320, 96, 704],  # -> (-10, 50, 30, 110) clipped to (0, 50, 30, 100)
            [650, 0, 700, 64],  # -> (203.1, 0, 218.75, 10): wholly outside, dropped
        ],
        np.float32,
    )
    out_boxes, out_scores = postprocess([(scores, boxes, (640, 640))], (100, 200), InferenceConfig())
    assert out_boxes.dtype == np.float32 and out_scores.dtype == np.float32
    np.testing.assert_allclose(out_boxes, [[20, 10, 100, 50], [0, 50, 30, 100]], rtol=1e-6)
    assert out_scores.tolist() == pytest.approx([0.9, 0.8])


def test_scales_merge_before_nms():
    # The same face seen at two scales of a 100 x 100 image: one box survives, the higher score.
    cfg = InferenceConfig(nms_iou=0.55)
    small = (np.array([0.6], np.float32), np.array([[48, 48, 96, 96]], np.float32), (200, 200))
    large = (np.array([0.7], np.float32), np.array([[192, 192, 388, 388]], np.float32), (800, 800))
    out_boxes, out_scores = postprocess([small, large], (100, 100), cfg)
    assert out_scores.tolist() == pytest.approx([0.7])
    np.testing.assert_allclose(out_boxes, [[24, 24, 48.5, 48.5]])


def test_at_most_max_detections_highest_first():
    # 300 disjoint boxes on a grid: NMS removes nothing, the top-100 by score remain.
    rng = np.random.default_rng(1)
    ys, xs = np.divmod(np.arange(300), 20)
    boxes = np.stack([xs * 30, ys * 30, xs * 30 + 20, ys * 30 + 20], axis=1).astype(np.float32)
    scores = rng.uniform(0.1, 1.0, 300).astype(np.float32)
    out_boxes, out_scores = finalize([(scores, boxes, (1.0, 1.0))], 0.55, 100, 600, 450)
    top = np.argsort(-scores, kind="stable")[:100]
    assert np.array_equal(out_scores, scores[top])
    assert np.array_equal(out_boxes, boxes[top])


def test_per_scale_topk_applies_before_merging():
    cfg = InferenceConfig(pre_nms_topk=2, max_detections=100)
    boxes = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], np.float32)
    scale_a = (np.array([0.9, 0.8, 0.7], np.float32), boxes, (100, 100))
    scale_b = (np.array([0.2, 0.3, 0.1], np.float32), boxes + 60, (100, 100))
    _, out_scores = postprocess([scale_a, scale_b], (100, 100), cfg)
    assert out_scores.tolist() == pytest.approx([0.9, 0.8, 0.3, 0.2])


def test_nothing_above_threshold_gives_empty_arrays():
    out_boxes, out_scores = postprocess(
        [(np.full(10, 0.01, np.float32), np.zeros((10, 4), np.float32), (640, 640))], (480, 640), InferenceConfig()
    )
    assert out_boxes.shape == (0, 4) and out_scores.shape == (0,)
    empty_boxes, empty_scores = finalize([], 0.55, 100, 10, 10)
    assert empty_boxes.shape == (0, 4) and empty_scores.shape == (0,)


def test_module_does_not_import_torch():
    code = "import sys, acfd.inference.postprocess; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("seed", range(5))
def test_top_k_selection_by_partition_equals_the_stable_sort(seed):
    """More candidates than top-k, with ties at the cut: the partition path keeps what a stable
    descending sort of every passing score would keep, in the same order."""
    from acfd.inference.postprocess import descending_order, select_per_scale

    rng = np.random.default_rng(seed)
    n = 5000
    scores = (rng.integers(0, 40, n) / 40).astype(np.float32)  # few distinct values: ties everywhere
    boxes = rng.uniform(0, 100, (n, 4)).astype(np.float32)
    for topk in (1, 37, 1000, 4999, 6000):
        got_scores, got_boxes = select_per_scale(scores, boxes, 0.08, topk)
        passing = np.flatnonzero(scores > np.float32(0.08))
        order = descending_order(scores[passing], np)[:topk]
        np.testing.assert_array_equal(got_scores, scores[passing][order])
        np.testing.assert_array_equal(got_boxes, boxes[passing][order])
