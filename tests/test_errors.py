"""TIDE-style error breakdown (training/evaluation/errors.py): hand-computed cases, and agreement of its AP
with ap.average_precision on random scenes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from acfd.training.evaluation.ap import average_precision
from acfd.training.evaluation.error_plot import plot_error_breakdown
from acfd.training.evaluation.errors import (
    ERROR_TYPES,
    background_detections,
    breakdown_by_size,
    error_breakdown,
    format_error_table,
)


def dets(*pairs):
    """``dets((box, score), ...)`` -> ``(boxes [D, 4], scores [D])``."""
    if not pairs:
        return np.zeros((0, 4)), np.zeros(0)
    return np.array([b for b, _ in pairs], dtype=np.float64), np.array([s for _, s in pairs], dtype=np.float64)


A, B, C, D = (0, 0, 100, 100), (200, 0, 300, 100), (400, 0, 500, 100), (0, 200, 100, 300)


def one_of_each():
    """4 faces A-D in one image. Detections: TP on A 0.9; duplicate of A 0.8 (IoU 0.9); localisation on C 0.7
    (IoU 0.3); background 0.6; TP on B 0.5. D has no detection near it: missed."""
    d = dets((A, 0.9), ((0, 0, 100, 90), 0.8), ((400, 0, 500, 30), 0.7), ((600, 600, 700, 700), 0.6), (B, 0.5))
    return [d], [np.array([A, B, C, D], dtype=np.float64)]


def test_one_of_each_by_hand():
    detections, gts = one_of_each()
    r = error_breakdown(detections, gts)
    # Ranked T F F F T over 4 faces: precision 1, 1/2, 1/3, 1/4, 2/5 at recall 1/4, 1/4, 1/4, 1/4, 2/4.
    # AP = 1/4 * 1 + 1/4 * 2/5 = 0.35.
    assert r.ap == pytest.approx(0.35)
    assert r.ap == pytest.approx(average_precision(detections, gts).ap)
    assert r.faces == 4 and r.detections == 5
    assert r.counts == {"missed": 1, "localisation": 1, "duplicate": 1, "background": 1, "true_positive": 2}
    # Localisation fixed (0.7 -> TP of C): T F T F T, precision 1, 1/2, 2/3, 1/2, 3/5 at recall 1/4, 1/4, 2/4, 2/4,
    # 3/4; envelope 1, 2/3, 3/5 -> AP = 1/4 + 1/4 * 2/3 + 1/4 * 3/5 = 17/30; dAP = 17/30 - 7/20 = 13/60.
    assert r.dap["localisation"] == pytest.approx(13 / 60)
    # Duplicate removed: T F F T, precision 1, 1/2, 1/3, 1/2 -> AP = 1/4 + 1/4 * 1/2 = 3/8; dAP = 1/40.
    assert r.dap["duplicate"] == pytest.approx(1 / 40)
    # Background removed: T F F T as well -> dAP = 1/40.
    assert r.dap["background"] == pytest.approx(1 / 40)
    # Missed D out of the count: 3 faces, AP = 1/3 + 1/3 * 2/5 = 7/15; dAP = 7/15 - 7/20 = 7/60.
    assert r.dap["missed"] == pytest.approx(7 / 60)
    # All FP removed: T T over 4 faces -> AP = 1/2; dAP = 0.15.
    assert r.fp_dap == pytest.approx(0.15)
    # Unmatched faces (C, D) out of the count: 2 faces, AP = 1/2 + 1/2 * 2/5 = 0.7; dAP = 0.35.
    assert r.fn_dap == pytest.approx(0.35)


def test_perfect_detection():
    r = error_breakdown([dets((A, 0.7))], [np.array([A], dtype=np.float64)])
    assert r.ap == 1.0 and r.faces == 1 and r.detections == 1
    assert all(r.dap[k] == 0.0 for k in ERROR_TYPES) and r.fp_dap == 0.0 and r.fn_dap == 0.0
    assert sum(r.counts[k] for k in ERROR_TYPES) == 0


def test_no_detections():
    r = error_breakdown([dets(), dets()], [np.array([A, B], dtype=np.float64), np.array([C], dtype=np.float64)])
    assert r.ap == 0.0 and r.faces == 3 and r.detections == 0
    assert r.counts["missed"] == 3
    # Fixing the misses leaves nothing to find and nothing wrong: AP 1 by convention.
    assert r.dap["missed"] == 1.0 and r.fn_dap == 1.0
    assert r.dap["localisation"] == r.dap["duplicate"] == r.dap["background"] == r.fp_dap == 0.0


def test_only_false_positives_and_missed_faces():
    # One face missed, one background detection: with the face gone only a false positive is left, AP 0.
    r = error_breakdown([dets(((500, 500, 600, 600), 0.9))], [np.array([A], dtype=np.float64)])
    assert r.ap == 0.0 and r.counts["missed"] == 1 and r.counts["background"] == 1
    assert r.dap["missed"] == 0.0 and r.fn_dap == 0.0
    assert r.fp_dap == 0.0 and r.dap["background"] == 0.0


def test_no_faces_row_is_nan_and_table_prints_dash():
    r = error_breakdown([dets(((500, 500, 600, 600), 0.9))], [np.zeros((0, 4))])
    assert math.isnan(r.ap) and r.faces == 0 and r.counts["background"] == 1
    assert all(math.isnan(v) for v in r.dap.values()) and math.isnan(r.fp_dap) and math.isnan(r.fn_dap)
    assert math.isnan(average_precision([dets(((500, 500, 600, 600), 0.9))], [np.zeros((0, 4))]).ap)
    lines = format_error_table({"all": r})
    assert len(lines) == 2 and lines[0].split()[:3] == ["row", "faces", "AP"]
    cells = lines[1].split()
    assert cells[0] == "all" and cells[1] == "0" and cells[2:9] == ["-"] * 7
    d = r.to_dict()
    assert d["ap"] is None and d["dap"]["missed"] is None
    json.dumps(d)


def test_ties_follow_ap_ranking():
    # Two images, equal scores: the FP of image 0 ranks before the TP of image 1 (stable, image order).
    detections = [dets(((500, 500, 600, 600), 0.5)), dets((A, 0.5))]
    gts = [np.zeros((0, 4)), np.array([A], dtype=np.float64)]
    r = error_breakdown(detections, gts)
    # F T over 1 face: precision 0, 1/2 at recall 0, 1 -> AP = 1/2.
    assert r.ap == pytest.approx(0.5) == pytest.approx(average_precision(detections, gts).ap)
    assert r.dap["background"] == pytest.approx(0.5)
    # Within an image, tied duplicates: the first one given takes the face, the other is the duplicate.
    detections = [dets((A, 0.5), ((0, 0, 100, 90), 0.5))]
    r = error_breakdown(detections, [np.array([A], dtype=np.float64)])
    assert r.counts["duplicate"] == 1 and r.counts["true_positive"] == 1 and r.ap == 1.0


def test_ignore_region_absorbs_detection():
    gts = [np.array([A], dtype=np.float64)]
    ignores = [np.array([(500, 500, 700, 700)], dtype=np.float64)]
    detections = [dets(((520, 520, 600, 600), 0.9), (A, 0.8), ((0, 0, 100, 90), 0.85))]
    r = error_breakdown(detections, gts, ignores)
    # The 0.9 detection lies inside the region: dropped. The 0.85 one takes A first (IoU 0.9); 0.8 is its duplicate.
    assert r.detections == 2 and r.counts["background"] == 0 and r.counts["duplicate"] == 1
    assert r.ap == 1.0 == average_precision(detections, gts, ignores=ignores).ap
    # Without the region it is a background error ranked first: F T F -> AP 1/2.
    r = error_breakdown(detections, gts)
    assert r.counts["background"] == 1 and r.ap == pytest.approx(0.5) and r.dap["background"] == pytest.approx(0.5)


def test_localisation_fix_gives_each_face_once():
    # Two localisation errors on C (0.8 then 0.7): the first becomes the TP, the second is removed.
    # A localisation error on A, which a later TP matches, is removed too (the face is taken).
    small = (400, 0, 500, 30)
    d = dets((small, 0.8), ((400, 70, 500, 100), 0.7), ((0, 0, 100, 40), 0.95), (A, 0.6))
    r = error_breakdown([d], [np.array([A, C], dtype=np.float64)])
    assert r.counts["localisation"] == 3 and r.counts["missed"] == 0 and r.counts["true_positive"] == 1
    # Original: F F F T over 2 faces -> AP = 1/2 * 1/4 = 1/8. Fixed: (removed) T (removed) T -> AP 1.
    assert r.ap == pytest.approx(1 / 8) and r.dap["localisation"] == pytest.approx(7 / 8)
    # No missed face; FN oracle keeps only A: F F F T over 1 face -> 1/4.
    assert r.dap["missed"] == 0.0 and r.fn_dap == pytest.approx(1 / 8)


def test_size_rows():
    small, medium, large = (0, 0, 10, 10), (100, 0, 150, 50), (200, 200, 400, 400)
    gts = [np.array([small, medium, large], dtype=np.float64)]
    detections = [
        dets(
            (large, 0.99),  # TP of the large face
            ((500, 500, 520, 520), 0.95),  # small background error (side 20)
            (small, 0.9),  # TP of the small face
            ((600, 600, 750, 750), 0.8),  # large background error (side 150)
        )
    ]
    rows = breakdown_by_size(detections, gts)
    assert list(rows) == ["all", "<32", "32-96", ">=96"]
    # all: T F T F over 3 faces: precision 1, 1/2, 2/3, 1/2 at recall 1/3, 1/3, 2/3, 2/3 -> AP = 1/3 + 2/9 = 5/9.
    assert rows["all"].ap == pytest.approx(5 / 9) == pytest.approx(average_precision(detections, gts).ap)
    assert rows["all"].counts["missed"] == 1 and rows["all"].counts["background"] == 2
    # <32 sees only the small face, the small FP and the small TP; the large TP is dropped, not a FP: F T -> 1/2.
    assert rows["<32"].faces == 1 and rows["<32"].detections == 2 and rows["<32"].ap == pytest.approx(0.5)
    assert rows["<32"].counts["background"] == 1 and rows["<32"].counts["missed"] == 0
    # 32-96: the medium face only, nothing found -> AP 0, one miss (whose fix gives 1 by convention).
    assert rows["32-96"].faces == 1 and rows["32-96"].detections == 0 and rows["32-96"].ap == 0.0
    assert rows["32-96"].counts["missed"] == 1 and rows["32-96"].dap["missed"] == 1.0
    # >=96: T F -> AP 1.
    assert rows[">=96"].faces == 1 and rows[">=96"].ap == 1.0 and rows[">=96"].counts["background"] == 1
    assert sum(rows[k].counts["missed"] for k in ("<32", "32-96", ">=96")) == rows["all"].counts["missed"]
    # A row of a range without faces: NaN.
    empty = error_breakdown(detections, gts, size_range=(1000.0, 2000.0))
    assert math.isnan(empty.ap) and empty.faces == 0 and empty.detections == 0
    lines = format_error_table(rows)
    assert len(lines) == 5 and len({len(line) for line in lines}) == 1


def test_size_row_localisation_fix_and_out_of_range_target():
    small, medium = (0, 0, 10, 10), (100, 0, 150, 50)
    gts = [np.array([small, medium], dtype=np.float64)]
    # A 20-px box around the 10-px face (IoU 1/4): a localisation error of a face in <32; fixed, AP 0 -> 1.
    rows = breakdown_by_size([dets(((0, 0, 20, 20), 0.9))], gts)
    assert rows["<32"].counts["localisation"] == 1 and rows["<32"].dap["localisation"] == 1.0
    assert rows["<32"].counts["missed"] == 0
    # A 30-px box on the 50-px face (IoU 900/2500): in <32 by its own size, but its target is out of range, so
    # its fix removes it (AP stays 0). The small face is missed; fixing that leaves one FP and no face: 0.
    rows = breakdown_by_size([dets(((100, 0, 130, 30), 0.9))], gts)
    r = rows["<32"]
    assert r.faces == 1 and r.detections == 1 and r.ap == 0.0
    assert r.counts["localisation"] == 1 and r.counts["missed"] == 1
    assert r.dap["localisation"] == 0.0 and r.dap["missed"] == 0.0 and r.fp_dap == 0.0
    # In 32-96 the 30-px box is dropped, and the medium face, its target, is not missed (found roughly).
    assert rows["32-96"].detections == 0 and rows["32-96"].counts["missed"] == 0 and rows["32-96"].ap == 0.0


def scene(seed: int, images: int = 30):
    rng = np.random.default_rng(seed)
    detections, gts, ignores = [], [], []
    for _ in range(images):
        g = int(rng.integers(0, 6))
        xy = rng.uniform(0, 400, (g, 2))
        wh = rng.uniform(5, 150, (g, 2))
        gt = np.concatenate([xy, xy + wh], axis=1)
        boxes = [b + rng.normal(0, 0.15, 4) * np.tile(b[2:] - b[:2], 2) for b in gt for _ in range(rng.integers(0, 3))]
        for _ in range(rng.integers(0, 4)):
            p = rng.uniform(0, 450, 2)
            boxes.append(np.concatenate([p, p + rng.uniform(5, 100, 2)]))
        boxes = np.array(boxes, dtype=np.float64).reshape(-1, 4)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        detections.append((boxes, np.round(rng.uniform(0, 1, len(boxes)), 1)))  # rounded: many ties
        gts.append(gt)
        p = rng.uniform(0, 400, 2)
        ignores.append(np.concatenate([p, p + 80])[None] if rng.random() < 0.3 else np.zeros((0, 4)))
    return detections, gts, ignores


@pytest.mark.parametrize("seed", range(4))
def test_random_scenes_agree_with_ap_and_stay_consistent(seed):
    detections, gts, ignores = scene(seed)
    reference = average_precision(detections, gts, ignores=ignores)
    rows = breakdown_by_size(detections, gts, ignores)
    r = rows["all"]
    assert r.ap == pytest.approx(reference.ap, abs=1e-12)
    assert r.faces == reference.faces and r.detections == reference.detections
    assert r.counts["true_positive"] == reference.true_positives
    assert (
        sum(r.counts[k] for k in ("localisation", "duplicate", "background"))
        == r.detections - r.counts["true_positive"]
    )
    for row in rows.values():
        if row.faces:
            assert all(v >= -1e-12 for v in row.dap.values()) and row.fp_dap >= -1e-12 and row.fn_dap >= -1e-12
            assert row.fp_dap >= max(row.dap["duplicate"], row.dap["background"]) - 1e-12
            assert row.fn_dap >= row.dap["missed"] - 1e-12
    assert sum(rows[k].faces for k in ("<32", "32-96", ">=96")) == r.faces
    assert sum(rows[k].counts["missed"] for k in ("<32", "32-96", ">=96")) == r.counts["missed"]


def test_plot_writes_png(tmp_path):
    detections, gts = one_of_each()
    rows = breakdown_by_size(detections, gts)  # includes NaN rows (no faces below 96 px)
    path = plot_error_breakdown(rows, tmp_path / "errors.png", title="test")
    data = path.read_bytes()
    assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_background_detections_by_hand():
    """Image 0: face A; a hit on A, a duplicate, a localisation error (IoU 0.33), two background boxes (one
    touching A's corner: IoU 0.005). Image 1: no faces; one box inside an ignore region (absorbed), one
    background box tied in score with image 0's: image order breaks the tie."""
    image0 = dets((A, 0.9), ((0, 0, 100, 50), 0.8), ((50, 0, 150, 100), 0.65), ((600, 600, 700, 700), 0.7),
                  ((99, 99, 199, 199), 0.6))  # fmt: skip
    image1 = dets(((110, 110, 120, 120), 0.95), ((0, 0, 5, 5), 0.7))
    gts = [np.array([A], dtype=np.float64), np.zeros((0, 4))]
    ignores = [np.zeros((0, 4)), np.array([[100, 100, 200, 200]], dtype=np.float64)]
    found = background_detections([image0, image1], gts, ignores)
    assert [(score, image) for score, image, _ in found] == [(0.7, 0), (0.7, 1), (0.6, 0)]
    np.testing.assert_array_equal(found[0][2], (600, 600, 700, 700))
    np.testing.assert_array_equal(found[2][2], (99, 99, 199, 199))
    assert [s for s, _, _ in background_detections([image0, image1], gts, ignores, min_score=0.65)] == [0.7, 0.7]
    assert len(background_detections([image0, image1], gts)) == 4  # without the ignore region: absorbed no more
    assert background_detections([dets()], [np.zeros((0, 4))]) == []
    with pytest.raises(ValueError, match="2 detection lists for 1 images"):
        background_detections([image0, image1], gts[:1])


@pytest.mark.parametrize("seed", range(3))
def test_background_detections_are_the_breakdowns_background_errors(seed):
    detections, gts, ignores = scene(seed)
    found = background_detections(detections, gts, ignores)
    assert len(found) == breakdown_by_size(detections, gts, ignores)["all"].counts["background"]
    assert all(a[0] >= b[0] for a, b in zip(found, found[1:]))


def test_background_gallery_png(tmp_path):
    import cv2

    from acfd.training.evaluation.error_gallery import HEADER, TILE, crop_tile, draw_background_gallery

    rng = np.random.default_rng(0)
    picture = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "frame.png"), picture)
    tile = crop_tile(picture, np.array([10, 20, 50, 40]), 0.71)
    assert tile.shape == (TILE, TILE, 3) and tile.dtype == np.uint8
    assert crop_tile(picture, np.array([500, 500, 600, 600]), 0.5).shape == (TILE, TILE, 3)  # outside: grey
    found = [(0.9, 0, np.array([10, 20, 50, 40])), (0.8, 1, np.array([0, 0, 30, 30])), (0.7, 0, np.array([0, 0, 0, 0]))]
    paths = [tmp_path / "frame.png", tmp_path / "gone.png"]  # a file that has disappeared: a grey tile
    out = draw_background_gallery([("a: 3 in all", found, paths), ("b: none", [], [])], tmp_path / "g.png", columns=2)
    written = cv2.imread(str(out))
    assert written.shape == (2 * HEADER + 3 * TILE, 2 * TILE, 3)  # a: 2 rows of 2 (3 tiles), b: 1 blank row
    with pytest.raises(OSError):
        draw_background_gallery([("a", found, paths)], tmp_path / "no_such_folder" / "g.png")
