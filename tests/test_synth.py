"""The cartoon-scene generator: reproducible bytes, annotations that load back, the face-box
convention on hand-placed heads, and the distributions the generator promises."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from acfd.cli import main
from acfd.training.data.annotations import load_detection_set
from acfd.scenes.synth import generate_scene, write_dataset
from acfd.scenes.synth_draw import Layer, Scene, finish_sprite
from acfd.scenes.synth_faces import draw_head


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_files(tmp_path):
    assert main(["synth", str(tmp_path / "a"), "--images", "6", "--seed", "1", "--size", "240x144"]) == 0
    write_dataset(tmp_path / "b", 6, seed=1, size=(240, 144), progress=False)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert sorted(a) == ["annotations.csv", "annotations.json"] + [f"images/synth_{i:05d}.png" for i in range(6)]
    assert a == b
    write_dataset(tmp_path / "c", 6, seed=2, size=(240, 144), progress=False)
    c = _files(tmp_path / "c")
    assert all(a[k] != c[k] for k in a if k.startswith("images/"))


def test_first_images_do_not_depend_on_count(tmp_path):
    write_dataset(tmp_path / "a", 2, seed=5, size=(200, 120), progress=False)
    write_dataset(tmp_path / "b", 4, seed=5, size=(200, 120), progress=False)
    for i in range(2):
        name = f"images/synth_{i:05d}.png"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_coco_and_csv_load_back_to_the_same_boxes(tmp_path):
    stats = write_dataset(tmp_path, 12, seed=3, size=(320, 192), progress=False)
    coco = load_detection_set(tmp_path / "annotations.json")
    csv = load_detection_set(tmp_path / "annotations.csv")
    folder = load_detection_set(tmp_path)
    assert folder.format == "coco" and coco.images == 12 and coco.faces == stats["faces"] > 0
    assert coco.problems == [] and csv.problems == []
    by_name = {r.path.name: r.boxes for r in csv.records}
    with_faces = [r for r in coco.records if len(r.boxes)]
    assert len(by_name) == len(with_faces) == 12 - coco.negatives
    for rec in with_faces:
        np.testing.assert_array_equal(by_name[rec.path.name], rec.boxes)
        assert (rec.width, rec.height) == (320, 192)
    data = json.loads((tmp_path / "annotations.json").read_text())
    assert data["categories"] == [{"id": 1, "name": "face", "supercategory": "face"}]
    x, y, w, h = data["annotations"][0]["bbox"]
    name = data["images"][data["annotations"][0]["image_id"] - 1]["file_name"]
    first = next(r for r in coco.records if r.path.name == name)
    np.testing.assert_array_equal(first.boxes[0], [x, y, x + w, y + h])


def _single_head(face_w, face_h, angle, cx=200.0, cy=150.0, seed=0):
    scene = Scene(np.full((300, 400, 3), 128, np.uint8))
    scene.paste(draw_head(np.random.default_rng(seed), face_w, face_h, angle), cx, cy)
    return scene


@pytest.mark.parametrize("seed", range(6))
def test_face_box_is_the_face_region_box(seed):
    # Convention: the box spans the face region, w x h centred where the head was placed.
    scene = _single_head(80, 60, 0.0, seed=seed)
    x1, y1, x2, y2 = scene.face_boxes[0]
    assert abs(x1 - 160) <= 1.5 and abs(x2 - 240) <= 1.5
    assert abs(y1 - 120) <= 1.5 and abs(y2 - 180) <= 1.5


@pytest.mark.parametrize("seed", range(4))
def test_rotated_face_box_is_tight_box_of_the_rotated_region(seed):
    # A quarter turn swaps width and height; 45 degrees of a w x h region fits in (w+h)/sqrt(2).
    x1, y1, x2, y2 = _single_head(90, 40, 90.0, seed=seed).face_boxes[0]
    assert abs((x2 - x1) - 40) <= 2 and abs((y2 - y1) - 90) <= 2
    x1, y1, x2, y2 = _single_head(90, 40, 45.0, seed=seed).face_boxes[0]
    assert (x2 - x1) <= (90 + 40) / math.sqrt(2) + 2 and (x2 - x1) > 60


def test_small_faces_are_drawn_to_size():
    x1, y1, x2, y2 = _single_head(12, 14, 0.0).face_boxes[0]
    assert abs((x2 - x1) - 12) <= 1 and abs((y2 - y1) - 14) <= 1


def test_occluded_and_truncated_faces_lose_visibility():
    scene = _single_head(80, 60, 0.0)
    assert scene.visible_fraction()[0] > 0.8  # hair/hat may cover a little of its own face
    cover = Layer(100, 100)
    cover.poly([(0, 0), (100, 0), (100, 100), (0, 100)], (0, 0, 0))
    scene.paste(finish_sprite(cover, None, (50.0, 50.0), 1, 0.0), 200, 150)
    assert scene.visible_fraction()[0] == 0.0
    edge = _single_head(80, 60, 0.0, cx=0.0)  # half outside the left border
    x1, _, x2, _ = edge.face_boxes[0]
    assert x1 == 0 and abs(x2 - 40) <= 1.5
    assert 0.3 < edge.visible_fraction()[0] < 0.7


def test_scene_distributions():
    rng_boxes = [generate_scene(np.random.default_rng([11, i]), 256, 160)[1] for i in range(60)]
    counts = np.array([len(b) for b in rng_boxes])
    boxes = np.concatenate(rng_boxes)
    assert boxes.dtype == np.float32 and boxes.shape[1] == 4
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (w >= 4).all() and (h >= 4).all()
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 256).all() and (boxes[:, 3] <= 160).all()
    aspect = w / h
    extreme = np.mean((aspect > 2) | (aspect < 0.5))
    assert 0.03 < extreme < 0.25
    assert aspect.min() < 0.5 and aspect.max() > 2
    assert (counts == 0).any() and counts.max() >= 8 and np.median(counts) >= 1


def test_scene_image_shape_and_size_check():
    image, boxes = generate_scene(np.random.default_rng(0), 200, 100)
    assert image.shape == (100, 200, 3) and image.dtype == np.uint8
    with pytest.raises(ValueError, match="too small"):
        generate_scene(np.random.default_rng(0), 8, 8)


def test_cli_rejects_a_bad_size(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "x"), "--images", "1", "--size", "640by384"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "640by384" in err[0]
