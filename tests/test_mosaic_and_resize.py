"""Mosaic and multi-scale batches keep boxes on the pixels they were drawn on; one resize rule for
training, evaluation and the serving preprocess."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from acfd.training.data.annotations import ImageRecord
from acfd.training.data.augment import AugmentConfig, config_for_size, resize_plain, warp
from acfd.training.data.dataset import DetectionDataset, MultiScaleBatches, collate
from acfd.inference.image_io import normalize, resize_interpolation, resize_rgb
from acfd.training.data.mosaic import mosaic
from acfd.training.evaluation.inference import network_input

REPO = Path(__file__).resolve().parents[1]


def _rect_image(rng, h, w):
    """Black image with 1-3 white rectangles (the faces)."""
    image = np.zeros((h, w, 3), np.uint8)
    boxes = []
    for _ in range(int(rng.integers(1, 4))):
        bw, bh = int(rng.integers(12, w // 2)), int(rng.integers(12, h // 2))
        x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
        if any(x < b[2] + 4 and b[0] < x + bw + 4 and y < b[3] + 4 and b[1] < y + bh + 4 for b in boxes):
            continue  # keep rectangles apart, so each box is its own white blob
        image[y : y + bh, x : x + bw] = 255
        boxes.append((x, y, x + bw, y + bh))
    return image, np.array(boxes, np.float32).reshape(-1, 4)


def test_mosaic_boxes_sit_on_their_white_pixels():
    cfg = AugmentConfig(size=160, color_prob=0.0)
    checked = 0
    for seed in range(30):
        rng = np.random.default_rng(seed)
        parts = [_rect_image(rng, int(rng.integers(80, 200)), int(rng.integers(80, 200))) for _ in range(4)]
        image, boxes = mosaic(parts, np.random.default_rng([seed, 1]), cfg)
        assert image.shape == (160, 160, 3) and image.dtype == np.uint8 and boxes.dtype == np.float32
        assert (boxes >= 0).all() and (boxes <= 160).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        white = image.min(axis=2) > 190
        covered = np.zeros_like(white)
        for x1, y1, x2, y2 in boxes:
            if min(x2 - x1, y2 - y1) < 6:
                continue
            inner = white[int(np.ceil(y1)) + 1 : int(y2) - 1, int(np.ceil(x1)) + 1 : int(x2) - 1]
            assert inner.mean() > 0.97, (seed, (x1, y1, x2, y2), inner.mean())
            checked += 1
        for x1, y1, x2, y2 in boxes:
            covered[max(0, int(y1) - 2) : int(np.ceil(y2)) + 2, max(0, int(x1) - 2) : int(np.ceil(x2)) + 2] = True
        # white outside every box is only from faces that were cut and dropped (< 40% left)
        stray = white & ~covered
        assert stray.sum() <= 0.6 * max(white.sum(), 1) + 50
    assert checked >= 60


def test_config_for_size_keeps_the_anchor_sides_in_pixels():
    cfg = AugmentConfig(size=384, anchor_sizes=(16, 32, 64))
    sub = config_for_size(cfg, 192)
    assert sub.size == 192
    # augment scales anchor_sizes by size / 640: the same pixel sides at both sizes
    np.testing.assert_allclose(np.array(sub.anchor_sizes) * 192 / 640, np.array(cfg.anchor_sizes) * 384 / 640)
    assert config_for_size(cfg, 384) is cfg


@pytest.fixture(scope="module")
def rect_records(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rects")
    rng = np.random.default_rng(0)
    records = []
    for i in range(6):
        image, boxes = _rect_image(rng, 120, 200)
        cv2.imwrite(str(folder / f"{i}.png"), image)
        records.append(ImageRecord(folder / f"{i}.png", boxes, 200, 120))
    return records


def test_multiscale_batches_one_size_each_and_repeatable(rect_records):
    ds = DetectionDataset(
        rect_records,
        train=True,
        size=96,
        seed=1,
        augment_config=AugmentConfig(size=96, color_prob=0.0),
        mosaic_prob=0.5,
    )
    sampler = torch.utils.data.RandomSampler(ds)
    sampler.set_epoch = lambda epoch: None
    batches = MultiScaleBatches(sampler, 2, (64, 96, 128), seed=3)
    batches.set_epoch(4)
    sizes = [batches.size_of(b) for b in range(50)]
    assert set(sizes) == {64, 96, 128}
    assert sizes == [batches.size_of(b) for b in range(50)]
    batches.set_epoch(5)
    assert sizes != [batches.size_of(b) for b in range(50)]
    for batch in batches:
        assert len(batch) == 2 and len({item[1] for item in batch}) == 1 and {item[2] for item in batch} == {5}
        images, gt, count = collate([ds[item] for item in batch])
        assert images.shape[-2:] == (batch[0][1], batch[0][1])
    # mosaic and multi-scale samples keep boxes on the white pixels too
    checked = 0
    for epoch in range(4):
        ds.set_epoch(epoch)
        for index in range(len(ds)):
            for size in (64, 128):
                image, boxes = ds.sample((index, size))
                assert image.shape == (size, size, 3)
                white = image.min(axis=2) > 190
                for x1, y1, x2, y2 in boxes:
                    if min(x2 - x1, y2 - y1) >= 6:
                        inner = white[int(np.ceil(y1)) + 1 : int(y2) - 1, int(np.ceil(x1)) + 1 : int(x2) - 1]
                        assert inner.mean() > 0.97
                        checked += 1
    assert checked >= 40


def test_mosaic_switches_off_for_the_last_epochs(rect_records):
    ds = DetectionDataset(rect_records, train=True, size=96, seed=0, mosaic_prob=1.0, mosaic_epochs=3)
    ds.set_epoch(2)
    assert ds.mosaic_active()
    ds.set_epoch(3)
    assert not ds.mosaic_active()
    with pytest.raises(ValueError, match="mosaic probability"):
        DetectionDataset(rect_records, train=True, size=96, mosaic_prob=1.5)


def _serving_preprocess():
    """The preprocess python model of the Triton repository, with a stand-in for the backend module."""
    sys.modules.setdefault("triton_python_backend_utils", types.ModuleType("triton_python_backend_utils"))
    spec = importlib.util.spec_from_file_location(
        "acfd_preprocess_model", REPO / "model_repository/preprocess/1/model.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TritonPythonModel()


@pytest.mark.parametrize("scale", [(48, 80), (200, 300), (90, 333)])
def test_one_resize_rule_for_training_evaluation_and_serving(scale):
    h, w = scale
    rng = np.random.default_rng(1)
    image = cv2.GaussianBlur(rng.integers(0, 256, (120, 200, 3), dtype=np.uint8), (3, 3), 0)
    expected = normalize(resize_rgb(image, h, w))
    # evaluation
    np.testing.assert_array_equal(network_input(image, (h, w)), expected)
    # serving: the preprocess model, from PNG bytes
    model = _serving_preprocess()
    model.max_pixels, model.min_side, model.scales = 10**8, 1, [(h, w)]
    ok, png = cv2.imencode(".png", image[:, :, ::-1])
    served = model._prepare(png.reshape(1, -1))
    np.testing.assert_array_equal(served[0][0], resize_rgb(image, h, w))  # uint8 pixels to the detector
    # ... which the exported graph's first step normalises exactly as image_io.normalize does
    from acfd.training.model import PixelPredictor

    graph_input = PixelPredictor(lambda images: images)(torch.from_numpy(served[0]))
    np.testing.assert_array_equal(graph_input[0].numpy(), expected)
    # training: the augmentation warp of a plain resize, and the evaluation data set (square inputs)
    side = min(h, w)
    square = resize_rgb(image, side, side)
    np.testing.assert_array_equal(warp(image, side / 200, side / 120, 0.0, 0.0, side), square)
    np.testing.assert_array_equal(resize_plain(image, np.zeros((0, 4)), side)[0], square)


def test_the_rule_averages_reductions_and_interpolates_enlargements():
    assert resize_interpolation((100, 200), (50, 100)) == cv2.INTER_AREA
    assert resize_interpolation((100, 200), (100, 150)) == cv2.INTER_AREA
    assert resize_interpolation((100, 200), (200, 400)) == cv2.INTER_LINEAR
    assert resize_interpolation((100, 200), (50, 300)) == cv2.INTER_LINEAR  # one side grows
    image = np.zeros((4, 4, 3), np.uint8)
    image[::2, ::2] = 255  # a checkerboard: area averaging gives grey, not aliased white or black
    assert np.all(resize_rgb(image, 2, 2) == 64)


def test_mid_trains_at_five_sizes_around_384_with_mosaic():
    from acfd.training.config import load_preset, train_sizes

    mid = load_preset("mid")
    assert train_sizes(mid.train) == (320, 352, 384, 416, 448)
    assert mid.train.mosaic_prob == 0.5 and mid.train.ema_decay > 0
    assert train_sizes(load_preset("acfd51").train) == (640,) and load_preset("acfd51").train.mosaic_prob == 0.0


def test_uint8_batches_normalised_on_the_device_give_the_same_numbers(rect_records):
    """``uint8=True`` (what a GPU run loads): the same samples, normalised by ``batch_on_device`` to
    the very floats the float32 loader gives."""
    from acfd.training.data.dataset import batch_on_device

    common = dict(train=True, size=96, seed=3, mosaic_prob=0.5)
    floats = DetectionDataset(rect_records, **common)
    bytes_ = DetectionDataset(rect_records, uint8=True, **common)
    items = [(i, 96) for i in range(len(rect_records))]
    a = collate([floats[i] for i in items])
    b = collate([bytes_[i] for i in items])
    assert b[0].dtype == torch.uint8 and b[0].shape == (len(items), 96, 96, 3)
    on_device = batch_on_device(b[0], torch.device("cpu"))
    assert on_device.dtype == torch.float32 and on_device.shape == a[0].shape
    assert on_device.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(on_device, batch_on_device(a[0], torch.device("cpu")))
    assert torch.equal(a[1], b[1]) and torch.equal(a[2], b[2])


def test_images_decoded_into_memory_give_the_same_samples(rect_records):
    common = dict(train=True, size=96, seed=1, mosaic_prob=0.5)
    from_files = DetectionDataset(rect_records, **common)
    in_memory = DetectionDataset(rect_records, **common)
    assert in_memory.preload(threads=2) == sum(r.width * r.height * 3 for r in rect_records)
    for i in range(len(rect_records)):
        a, b = from_files.sample_with_ignore(i), in_memory.sample_with_ignore(i)
        assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_persistent_workers_see_each_epoch_through_the_items(rect_records):
    """The epoch travels with each item: a loader whose worker persists across epochs gives, epoch
    after epoch, the samples the dataset makes in this process for that epoch."""
    from acfd.training.data.dataset import collate_with_ignore

    ds = DetectionDataset(rect_records, train=True, size=64, seed=2, mosaic_prob=0.5, mosaic_epochs=2)
    sampler = torch.utils.data.SequentialSampler(ds)
    sampler.set_epoch = lambda epoch: None
    batches = MultiScaleBatches(sampler, 3, (64,), seed=0)
    loader = torch.utils.data.DataLoader(
        ds, batch_sampler=batches, num_workers=1, persistent_workers=True, collate_fn=collate_with_ignore
    )
    for epoch in range(3):  # mosaic on in epochs 0 and 1, off in 2
        batches.set_epoch(epoch)  # the dataset's own epoch (here and in the worker) stays 0
        got = [b[0] for b in loader]
        want = [collate([ds[(i, 64, epoch)] for i in range(b, b + 3)])[0] for b in (0, 3)]
        assert all(torch.equal(g, w) for g, w in zip(got, want)), epoch
    ds.set_epoch(1)
    assert all(np.array_equal(a, b) for a, b in zip(ds.sample_with_ignore((0, 64)), ds.sample_with_ignore((0, 64, 1))))
