"""NMS: the NumPy path against a plain O(N^2) Python reference; the CuPy path against NumPy on a GPU."""

from __future__ import annotations

import numpy as np
import pytest

from acfd.kernels.nms import array_module, cupy_usable, nms, nms_numpy


def reference_nms(boxes, scores, threshold):
    """Textbook greedy NMS in plain Python floats (float64), written independently of the module."""
    boxes = [[float(v) for v in b] for b in boxes]
    scores = [float(s) for s in scores]
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    suppressed = [False] * len(scores)
    kept = []
    for pos, i in enumerate(order):
        if suppressed[i]:
            continue
        kept.append(i)
        ax1, ay1, ax2, ay2 = boxes[i]
        area_a = max(ax2 - ax1, 0.0) * max(ay2 - ay1, 0.0)
        for j in order[pos + 1 :]:
            bx1, by1, bx2, by2 = boxes[j]
            inter = max(min(ax2, bx2) - max(ax1, bx1), 0.0) * max(min(ay2, by2) - max(ay1, by1), 0.0)
            union = area_a + max(bx2 - bx1, 0.0) * max(by2 - by1, 0.0) - inter
            if union > 0 and inter / union > threshold:
                suppressed[j] = True
    return kept


def random_boxes(rng, n, extent=200.0, max_side=60.0):
    xy = rng.uniform(0, extent, (n, 2))
    wh = rng.uniform(1, max_side, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


def tie_heavy(rng, n):
    """Integer boxes on a small grid (many identical and half-overlapping boxes) with few distinct scores."""
    xy = rng.integers(0, 8, (n, 2)) * 4
    wh = rng.integers(1, 4, (n, 2)) * 8
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    scores = rng.integers(0, 4, n).astype(np.float32) / 4
    return boxes, scores


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_random_inputs_match_reference(seed, threshold):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    boxes = random_boxes(rng, n)
    scores = rng.random(n).astype(np.float32)
    kept = nms(boxes, scores, threshold)
    assert kept.dtype == np.int64
    assert kept.tolist() == reference_nms(boxes, scores, threshold)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("threshold", [0.0, 1 / 3, 0.5, 0.55])
def test_tie_heavy_inputs_match_reference(seed, threshold):
    # Thresholds equal to reachable IoUs (1/3, 1/2) check the strict ">" on exact ties.
    boxes, scores = tie_heavy(np.random.default_rng(100 + seed), 150)
    assert nms(boxes, scores, threshold).tolist() == reference_nms(boxes, scores, threshold)


def test_hand_computed_case():
    boxes = np.array(
        [
            [0, 0, 10, 10],  # 0: score 0.6
            [0, 0, 10, 5],  # 1: IoU 0.5 with box 0 (not above 0.5: kept)
            [1, 0, 11, 10],  # 2: IoU 90/110 with box 0
            [50, 50, 60, 60],  # 3: alone
        ],
        dtype=np.float32,
    )
    scores = np.array([0.6, 0.5, 0.9, 0.1], dtype=np.float32)
    # Order 2, 0, 1, 3: box 2 suppresses box 0; box 1 vs box 2: inter 45, union 100+50-45 -> 0.43.
    assert nms(boxes, scores, 0.5).tolist() == [2, 1, 3]
    assert nms(boxes, scores, 0.42).tolist() == [2, 3]


def test_empty_and_single_box():
    empty = nms(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), 0.5)
    assert empty.dtype == np.int64 and empty.shape == (0,)
    one = nms(np.array([[1, 2, 3, 4]], np.float32), np.array([0.3], np.float32), 0.5)
    assert one.tolist() == [0]


def test_identical_boxes_keep_first_of_equal_scores():
    boxes = np.tile(np.array([[5, 5, 25, 45]], np.float32), (5, 1))
    assert nms(boxes, np.full(5, 0.7, np.float32), 0.5).tolist() == [0]
    assert nms(boxes, np.array([0.1, 0.2, 0.9, 0.9, 0.3], np.float32), 0.5).tolist() == [2]
    # IoU of identical boxes is 1: nothing is suppressed only at threshold 1.
    assert nms(boxes, np.full(5, 0.7, np.float32), 1.0).tolist() == [0, 1, 2, 3, 4]


def test_zero_area_boxes_never_suppress():
    boxes = np.array([[5, 5, 5, 20], [5, 5, 5, 20], [0, 0, 10, 10], [3, 3, 3, 3]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    assert nms(boxes, scores, 0.1).tolist() == [0, 1, 2, 3]
    assert reference_nms(boxes, scores, 0.1) == [0, 1, 2, 3]


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="3 boxes but 2 scores"):
        nms_numpy(np.zeros((3, 4), np.float32), np.zeros(2, np.float32), 0.5)


def test_array_module_falls_back_to_numpy_without_a_gpu():
    xp = array_module(prefer_gpu=True)
    assert xp is np if cupy_usable() is not None else xp.__name__ == "cupy"
    assert array_module(prefer_gpu=False) is np


@pytest.mark.skipif(cupy_usable() is not None, reason=f"CuPy GPU path: {cupy_usable()}")
@pytest.mark.parametrize("seed", range(4))
def test_cupy_matches_numpy(seed):
    import cupy

    rng = np.random.default_rng(seed)
    cases = [
        (random_boxes(rng, 3000, extent=600.0, max_side=120.0), rng.random(3000).astype(np.float32), 0.55),
        (*tie_heavy(rng, 700), 0.5),
        (random_boxes(rng, 65), rng.random(65).astype(np.float32), 0.3),
        (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5),
    ]
    for boxes, scores, threshold in cases:
        expected = nms(boxes, scores, threshold)
        got = nms(cupy.asarray(boxes), cupy.asarray(scores), threshold)
        assert isinstance(got, cupy.ndarray) and got.dtype == cupy.int64
        assert cupy.asnumpy(got).tolist() == expected.tolist()
        for max_keep in (0, 1, 100):
            first = nms(cupy.asarray(boxes), cupy.asarray(scores), threshold, max_keep=max_keep)
            assert cupy.asnumpy(first).tolist() == expected[:max_keep].tolist()


def crowded(rng, n, faces, extent=1000.0):
    """``n`` jittered candidates around ``faces`` boxes: what a detector's merged scales look like."""
    centres = rng.uniform(0, extent, (faces, 2))
    sides = rng.uniform(10, 80, faces)
    owner = rng.integers(0, faces, n)
    xy = centres[owner] + rng.normal(0, 0.15, (n, 2)) * sides[owner, None]
    wh = sides[owner, None] * rng.uniform(0.8, 1.2, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32), rng.random(n).astype(np.float32)


@pytest.mark.parametrize("faces", [1, 10, 200, 3000])
@pytest.mark.parametrize("max_keep", [1, 7, 100])
@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.55, 0.95])
def test_stopping_at_max_keep_gives_the_full_run_cut(faces, max_keep, threshold):
    rng = np.random.default_rng(faces * 100 + max_keep)
    boxes, scores = crowded(rng, 3000, faces)
    full = nms(boxes, scores, threshold)
    first = nms(boxes, scores, threshold, max_keep=max_keep)
    assert first.dtype == np.int64
    assert first.tolist() == full[:max_keep].tolist()


@pytest.mark.parametrize("seed", range(8))
def test_stopping_early_at_the_iou_boundary(seed):
    """Pairs built to sit within float32 rounding of the threshold: the sliced search must still
    see every box the contract's IoU suppresses (widths of 1 to 500 px, offsets near the bound)."""
    rng = np.random.default_rng(seed)
    n = 600
    width = np.exp(rng.uniform(0, np.log(500), n))
    x1 = rng.uniform(-50, 2000, n)
    base = np.stack([x1, np.zeros(n), x1 + width, width], axis=1)
    # a partner shifted along x so that IoU is t: for equal boxes IoU = (w - d) / (w + d)
    t = 0.55
    shift = width * (1 - t) / (1 + t) * (1 + rng.normal(0, 1e-6, n))
    partner = base + np.stack([shift, np.zeros(n), shift, np.zeros(n)], axis=1)
    boxes = np.concatenate([base, partner]).astype(np.float32)
    scores = rng.random(2 * n).astype(np.float32)
    full = nms(boxes, scores, t)
    assert nms(boxes, scores, t, max_keep=len(full)).tolist() == full.tolist()
    assert nms(boxes, scores, t, max_keep=50).tolist() == full[:50].tolist()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("threshold", [0.0, 0.5])
def test_stopping_early_on_ties_and_identical_boxes(seed, threshold):
    rng = np.random.default_rng(seed)
    boxes, scores = tie_heavy(rng, 500)
    expected = reference_nms(boxes, scores, threshold)
    for max_keep in (1, 3, len(expected), len(expected) + 5, 10_000):
        assert nms(boxes, scores, threshold, max_keep=max_keep).tolist() == expected[:max_keep]


def test_stopping_early_with_degenerate_wide_and_inverted_boxes():
    rng = np.random.default_rng(7)
    boxes = random_boxes(rng, 400, extent=300.0)
    boxes[::7, 2] = boxes[::7, 0]  # zero width
    boxes[::11] = boxes[::11][:, [2, 3, 0, 1]]  # inverted (x2 < x1): no area, suppresses nothing
    boxes[5] = [-1e4, -1e4, 1e4, 1e4]  # one box wider than everything: every slice reaches it
    scores = rng.random(400).astype(np.float32)
    scores[::13] = 0.5  # ties
    expected = reference_nms(boxes, scores, 0.3)
    for max_keep in (0, 1, 50, len(expected)):
        assert nms(boxes, scores, 0.3, max_keep=max_keep).tolist() == expected[:max_keep]
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5, max_keep=5).tolist() == []
