"""Ignore regions (COCO crowd, VOC difficult) end to end: kept by the loaders, carried through
augmentation, mosaic and collation, left out of the classification loss, and in evaluation neither
true nor false positives. The expected values are worked out by hand in the comments."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest
import torch

from acfd.training.config import TrainConfig
from acfd.training.data.annotations import ImageRecord, load_detection_set
from acfd.training.data.augment import AugmentConfig, augment
from acfd.training.data.dataset import DetectionDataset, collate, collate_with_ignore
from acfd.training.data.mosaic import mosaic, mosaic_with_ignore
from acfd.training.evaluation.ap import average_precision
from acfd.training.evaluation.operating_point import at_threshold
from acfd.training.loss import DetectionLoss, anchor_iof

# --- evaluation -------------------------------------------------------------------------------
# Image 0: faces G1 = (0,0,10,10), G2 = (20,0,30,10); ignore region R = (50,0,70,20).
# Image 1: no faces; ignore region R2 = (0,0,40,40).
GT = [np.array([[0, 0, 10, 10], [20, 0, 30, 10]], np.float32), np.zeros((0, 4), np.float32)]
IGNORE = [np.array([[50, 0, 70, 20]], np.float32), np.array([[0, 0, 40, 40]], np.float32)]
DETECTIONS = [
    (
        np.array(
            [
                [0, 0, 10, 10],  # 0.9: G1, true positive
                [52, 2, 62, 12],  # 0.8: all of it inside R: dropped (without ignore: false positive)
                [20, 0, 30, 10],  # 0.7: G2, true positive
                [100, 100, 110, 110],  # 0.6: false positive
                [65, 0, 77, 10],
            ],  # 0.5: 5x10 of its 12x10 inside R = 0.42 < 0.5: false positive either way
            np.float32,
        ),
        np.array([0.9, 0.8, 0.7, 0.6, 0.5]),
    ),
    (np.array([[5, 5, 15, 15]], np.float32), np.array([0.85])),  # 0.85: inside R2: dropped / false positive
]


def test_eval_with_and_without_ignore_regions_hand_computed():
    # With them: ranking 0.9 TP, 0.7 TP, 0.6 FP, 0.5 FP (0.85 and 0.8 dropped), 2 faces.
    # precision 1, 1, 2/3, 1/2; recall 1/2, 1, 1, 1  ->  AP = 1/2 * 1 + 1/2 * 1 = 1.0
    with_ignore = average_precision(DETECTIONS, GT, 0.5, IGNORE)
    assert with_ignore.ap == pytest.approx(1.0)
    assert (with_ignore.detections, with_ignore.ignored, with_ignore.true_positives, with_ignore.faces) == (4, 2, 2, 2)
    np.testing.assert_allclose(with_ignore.precision, [1, 1, 2 / 3, 1 / 2])
    # Without: 0.9 TP, 0.85 FP, 0.8 FP, 0.7 TP, 0.6 FP, 0.5 FP.
    # precision 1, 1/2, 1/3, 1/2, 2/5, 1/3; recall 1/2, 1/2, 1/2, 1, 1, 1
    # envelope at recall 1/2: 1; at recall 1: 1/2  ->  AP = 1/2 * 1 + 1/2 * 1/2 = 0.75
    without = average_precision(DETECTIONS, GT, 0.5)
    assert without.ap == pytest.approx(0.75)
    assert (without.detections, without.ignored, without.true_positives) == (6, 0, 2)
    # ignore regions are not faces: the same detections scored with the regions as faces would differ
    assert average_precision(DETECTIONS, [np.concatenate([g, r]) for g, r in zip(GT, IGNORE)]).faces == 4
    # At score >= 0.65: with them 2 TP, 0 FP (precision 1); without: 2 TP, 2 FP (precision 1/2)
    assert at_threshold(DETECTIONS, GT, 0.65, 0.5, IGNORE)["precision"] == pytest.approx(1.0)
    assert at_threshold(DETECTIONS, GT, 0.65, 0.5)["precision"] == pytest.approx(0.5)
    assert at_threshold(DETECTIONS, GT, 0.65, 0.5, IGNORE)["recall"] == pytest.approx(1.0)


def test_a_face_match_wins_over_an_ignore_region():
    # A detection on a face that also lies inside an ignore region is a true positive.
    dets = [(np.array([[0, 0, 10, 10]], np.float32), np.array([0.9]))]
    result = average_precision(
        dets, [np.array([[0, 0, 10, 10]], np.float32)], 0.5, [np.array([[0, 0, 40, 40]], np.float32)]
    )
    assert (result.true_positives, result.ignored, result.ap) == (1, 0, 1.0)


# --- training: the loss -------------------------------------------------------------------------
CFG = TrainConfig()  # t1 0.35, t2 0.7
# A0 is the face (psi1). A1 is ignore region R1 itself (DAM would match it: IoU 1). A2 lies inside
# the large region R2 (IoU 100/3600 = 0.03, but all of its area inside: IoF 1). A3 is far from
# everything (negative). A4 overlaps R1 by 20 of its 100 (IoU 20/180 = 0.11, IoF 0.2): negative.
ANCHORS = torch.tensor([[0.0, 0, 10, 10], [50, 0, 60, 10], [110, 10, 120, 20], [200, 200, 210, 210], [58, 0, 68, 10]])
FACES = torch.tensor([[[0.0, 0, 10, 10]]])
REGIONS = torch.tensor([[[50.0, 0, 60, 10], [100, 0, 160, 60]]])
LOGITS = torch.tensor([[1.5, 2.0, 0.5, -1.0, 0.3]])


def test_anchors_on_ignore_regions_are_left_out_of_the_loss():
    loss = DetectionLoss(CFG, kernels="torch")
    deltas = torch.zeros(1, 5, 4)  # regressed boxes = anchors
    iof = anchor_iof(ANCHORS, REGIONS, torch.tensor([2]))
    np.testing.assert_allclose(iof.numpy(), [[0, 1, 1, 0, 0.2]], atol=1e-6)
    pred = ANCHORS.unsqueeze(0)
    labels = torch.tensor([[1, 0, 0, 0, 0]])
    ignored = loss.ignored_anchors(labels, ANCHORS, pred, REGIONS, torch.tensor([2]))
    assert ignored.tolist() == [[False, True, True, False, False]]
    logits = LOGITS.clone().requires_grad_(True)
    parts = loss(logits, deltas, ANCHORS, FACES, torch.tensor([1]), REGIONS, torch.tensor([2]))
    keep = [0, 3, 4]  # the same loss as a set of only the anchors that are not ignored
    alone = loss(LOGITS[:, keep], deltas[:, keep], ANCHORS[keep], FACES, torch.tensor([1]))
    assert (parts.n1, parts.n2, parts.ignored) == (1, 0, 2)
    assert float(parts.cls) == pytest.approx(float(alone.cls), rel=1e-6)
    assert float(parts.reg) == pytest.approx(float(alone.reg), abs=1e-7)
    parts.total.backward()
    assert logits.grad[0, 1] == 0 and logits.grad[0, 2] == 0 and logits.grad[0, 3] != 0
    # no regions, or only padding rows: the loss is the plain one
    plain = loss(LOGITS, deltas, ANCHORS, FACES, torch.tensor([1]))
    padded = loss(LOGITS, deltas, ANCHORS, FACES, torch.tensor([1]), REGIONS, torch.tensor([0]))
    assert float(padded.total) == float(plain.total) and padded.ignored == 0
    assert float(plain.cls) > float(parts.cls)


def test_ignored_anchors_cost_nothing_in_the_triton_kernels_too():
    pytest.importorskip("triton")
    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("Triton kernels need CUDA or TRITON_INTERPRET=1")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    args = [
        t.to(device)
        for t in (LOGITS, torch.zeros(1, 5, 4), ANCHORS, FACES, torch.tensor([1]), REGIONS, torch.tensor([2]))
    ]
    ref = DetectionLoss(CFG, kernels="torch")(*args)
    logits = args[0].clone().requires_grad_(True)
    tri = DetectionLoss(CFG, kernels="triton")(logits, *args[1:])
    assert tri.ignored == ref.ignored == 2
    assert float(tri.total.detach()) == pytest.approx(float(ref.total), rel=1e-5)
    tri.total.backward()
    assert float(logits.grad[0, 1]) == 0.0 and float(logits.grad[0, 2]) == 0.0


# --- data: loaders, augmentation, mosaic, collation -------------------------------------------------
def _png(path, w, h, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_coco_crowd_boxes_are_ignore_regions(tmp_path):
    _png(tmp_path / "a.png", 80, 60)
    (tmp_path / "ann.json").write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "a.png"}],
                "categories": [{"id": 1, "name": "face"}],
                "annotations": [
                    {"image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 10]},
                    {"image_id": 1, "category_id": 1, "bbox": [30, 20, 60, 30], "iscrowd": 1},
                ],
            }
        )
    )
    ds = load_detection_set(tmp_path / "ann.json")
    np.testing.assert_array_equal(ds.records[0].boxes, [[1, 2, 11, 12]])
    np.testing.assert_array_equal(ds.records[0].ignore, [[30, 20, 80, 50]])  # clipped to the image
    assert (ds.crowd, ds.ignore_regions, ds.clipped, ds.summary()["ignore_kept"]) == (1, 1, 1, True)
    skipped = load_detection_set(tmp_path / "ann.json", keep_ignore=False)
    assert (skipped.crowd, skipped.ignore_regions, skipped.faces) == (1, 0, 1)


def test_augment_maps_ignore_regions_without_changing_the_sample():
    image = np.random.default_rng(0).integers(0, 256, (50, 100, 3), dtype=np.uint8)
    boxes = np.array([[40, 10, 60, 30]], np.float32)
    regions = np.array([[10, 10, 30, 20], [90, 40, 140, 60]], np.float32)
    plain = AugmentConfig(size=200, tile_prob=0.0, expand_prob=0.0, crop_prob=0.0, flip_prob=1.0, color_prob=0.0)
    out = augment(image, boxes, np.random.default_rng(1), plain, ignore=regions)
    # x2, y4, then flipped: (10,10,30,20) -> (20,40,60,80) -> (140,40,180,80); the second is clipped
    np.testing.assert_allclose(out.ignore, [[140, 40, 180, 80], [0, 160, 20, 200]])
    for seed in range(20):
        cfg = AugmentConfig(size=96)
        a = augment(image, boxes, np.random.default_rng(seed), cfg, ignore=regions)
        b = augment(image, boxes, np.random.default_rng(seed), cfg)
        assert np.array_equal(a.image, b.image) and np.array_equal(a.boxes, b.boxes) and len(b.ignore) == 0
        assert ((a.ignore[:, 2] > a.ignore[:, 0]) & (a.ignore[:, 3] > a.ignore[:, 1])).all()
        assert a.ignore.min(initial=0) >= 0 and a.ignore.max(initial=0) <= 96
        parts = [(image, boxes)] * 4
        m_image, m_boxes = mosaic(parts, np.random.default_rng(seed), cfg)
        w_image, w_boxes, w_ignore = mosaic_with_ignore([(image, boxes, regions)] * 4, np.random.default_rng(seed), cfg)
        assert np.array_equal(m_image, w_image) and np.array_equal(m_boxes, w_boxes)
        assert w_ignore.shape[1] == 4 and (w_ignore.max(initial=0) <= 96)


def test_dataset_and_collate_carry_ignore_regions(tmp_path):
    _png(tmp_path / "a.png", 100, 50)
    rec = ImageRecord(
        tmp_path / "a.png",
        np.array([[40, 10, 60, 20]], np.float32),
        100,
        50,
        ignore=np.array([[0, 0, 50, 25]], np.float32),
    )
    image, boxes, ignore = DetectionDataset([rec], train=False, size=200)[0]
    np.testing.assert_allclose(ignore.numpy(), [[0, 0, 100, 100]])
    plain = ImageRecord(tmp_path / "a.png", np.zeros((0, 4), np.float32), 100, 50)
    batch = [DetectionDataset([r], train=True, size=64)[0] for r in (rec, plain)]
    images, gt, count, regions, region_count = collate_with_ignore(batch)
    assert images.shape == (2, 3, 64, 64) and region_count[1] == 0 and regions.shape[0] == 2
    assert [t.shape for t in collate(batch)] == [images.shape, gt.shape, count.shape]


def test_a_voc_difficult_face_is_ignored_in_a_training_step(tmp_path):
    from acfd.cli import main
    from acfd.training.config import load_preset
    from acfd.training.model import build_model

    assert (
        main(["synth", str(tmp_path / "voc"), "--format", "voc", "--images", "3", "--seed", "2", "--size", "128x96"])
        == 0
    )
    for xml in (tmp_path / "voc" / "Annotations").glob("*.xml"):  # every first face made difficult
        xml.write_text(xml.read_text().replace("<difficult>0</difficult>", "<difficult>1</difficult>", 1))
    ds = load_detection_set(tmp_path / "voc")
    assert ds.ignore_regions == ds.difficult > 0
    dataset = DetectionDataset(ds.records, train=False, size=96)
    images, gt, count, regions, region_count = collate_with_ignore([dataset[i] for i in range(len(dataset))])
    preset = load_preset("tiny")
    torch.manual_seed(0)
    model = build_model(preset)
    logits, deltas = model(images)
    parts = DetectionLoss(preset.train, "torch")(
        logits, deltas, model.anchors(96, 96), gt, count, regions, region_count
    )
    assert parts.ignored > 0 and torch.isfinite(parts.total)
