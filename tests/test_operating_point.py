"""Precision / recall / F1 at a threshold, recall by face size, and the best-F1 threshold, by hand."""

import numpy as np

from acfd.training.evaluation.ap import average_precision
from acfd.training.evaluation.operating_point import at_threshold, best_f1


def _case():
    # image 0: a 20 px face (found at 0.9), a 50 px face (found at 0.4), a false box at 0.6
    # image 1: a 120 px face (found at 0.8), a false box at 0.3; image 2: no faces, a false box at 0.7
    gts = [
        np.array([[0, 0, 20, 20], [100, 100, 150, 150]], np.float32),
        np.array([[0, 0, 120, 120]], np.float32),
        np.zeros((0, 4), np.float32),
    ]
    dets = [
        (
            np.array([[0, 0, 20, 20], [100, 100, 150, 150], [300, 300, 340, 340]], np.float32),
            np.array([0.9, 0.4, 0.6], np.float32),
        ),
        (np.array([[0, 0, 118, 120], [200, 0, 260, 60]], np.float32), np.array([0.8, 0.3], np.float32)),
        (np.array([[10, 10, 50, 50]], np.float32), np.array([0.7], np.float32)),
    ]
    return dets, gts


def test_at_threshold_by_hand():
    dets, gts = _case()
    at = at_threshold(dets, gts, 0.5)  # kept: 0.9 TP, 0.6 FP, 0.8 TP, 0.7 FP
    assert (at["true_positives"], at["false_positives"]) == (2, 2)
    assert at["precision"] == 0.5 and abs(at["recall"] - 2 / 3) < 1e-12
    assert abs(at["f1"] - 2 * 0.5 * (2 / 3) / (0.5 + 2 / 3)) < 1e-12
    assert at["recall_by_size"] == {
        "<32": {"found": 1, "faces": 1, "recall": 1.0},
        "32-96": {"found": 0, "faces": 1, "recall": 0.0},
        ">=96": {"found": 1, "faces": 1, "recall": 1.0},
    }
    everything = at_threshold(dets, gts, 0.0)
    assert everything["recall"] == 1.0 and everything["false_positives"] == 3
    nothing = at_threshold(dets, gts, 0.95)
    assert (nothing["precision"], nothing["recall"], nothing["f1"]) == (0.0, 0.0, 0.0)


def test_best_f1_by_hand_and_on_ties():
    dets, gts = _case()
    result = average_precision(dets, gts)
    best = best_f1(result.precision, result.recall, result.scores)
    # ranking 0.9 T, 0.8 T, 0.7 F, 0.6 F, 0.4 T, 0.3 F: F1 after each = 0.5, 0.8, 0.667, 0.571, 0.75, 0.667
    assert abs(best["f1"] - 0.8) < 1e-12 and best["threshold"] == np.float32(0.8)
    assert (best["precision"], best["recall"]) == (1.0, 2 / 3)
    # a tie can only be cut as a whole: scores 0.5, 0.5 with T, F -> cut after both
    tied = best_f1(np.array([1.0, 0.5]), np.array([1.0, 1.0]), np.array([0.5, 0.5]))
    assert abs(tied["f1"] - 2 * 0.5 / 1.5) < 1e-12
    assert best_f1(np.zeros(0), np.zeros(0), np.zeros(0))["f1"] == 0.0
