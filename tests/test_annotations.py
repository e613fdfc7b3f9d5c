"""Loaders for iCartoonFace CSV and COCO JSON, and ``acfd data check``: planted problems are named
with file and line (or entry), boxes are clipped or dropped and counted, and fatal input fails with
one readable line."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from acfd.cli import main
from acfd.training.data.annotations import ASPECT_BINS, SIZE_BINS, histogram, load_detection_set, split_records


def _png(path, width, height):
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", np.zeros((height, width, 3), np.uint8))
    path.write_bytes(buf.tobytes())


@pytest.fixture
def planted(tmp_path):
    _png(tmp_path / "images" / "a.png", 64, 48)
    _png(tmp_path / "images" / "b.png", 64, 48)
    (tmp_path / "images" / "broken.png").write_bytes(b"this is not an image")
    csv = tmp_path / "faces.csv"
    csv.write_text(
        "\n".join(
            [
                "a.png,10,10,30,40",  # 1 good
                "a.png,1,2,3",  # 2 too few columns
                "a.png,x,2,30,40",  # 3 not a number
                "a.png,30,2,10,40",  # 4 x2 < x1
                "missing.png,1,1,5,5",  # 5 image not found
                "",  # 6 blank: ignored
                "b.png,-5,-5,10,10",  # 7 clipped to the image
                "b.png,100,100,120,120",  # 8 outside the 64x48 image: dropped
                "b.png,1,1,9,9,face",  # 9 six columns (validation format)
                "broken.png,1,1,9,9",  # 10 unreadable image
                "a.png,5,5,5,20",  # 11 zero width
            ]
        )
        + "\n"
    )
    return csv


def test_planted_csv_problems_are_named(planted):
    ds = load_detection_set(planted)
    where = {p.split(": ")[0] for p in ds.problems}
    assert where == {f"{planted}:{n}" for n in (2, 3, 4, 5, 8, 10, 11)}
    text = "\n".join(ds.problems)
    assert "got 4" in text and "'x'" in text and "missing.png" in text and "64x48" in text
    assert (ds.bad_entries, ds.dropped, ds.clipped, ds.missing_images, ds.unreadable_images) == (2, 3, 1, 1, 1)
    boxes = {r.path.name: r.boxes for r in ds.records}
    assert sorted(boxes) == ["a.png", "b.png"]
    np.testing.assert_array_equal(boxes["a.png"], [[10, 10, 30, 40]])
    np.testing.assert_array_equal(boxes["b.png"], [[0, 0, 10, 10], [1, 1, 9, 9]])
    assert boxes["a.png"].dtype == np.float32
    assert (ds.images, ds.faces) == (2, 3)


def test_corrupt_header_and_truncated_image(tmp_path):
    _png(tmp_path / "ok.png", 32, 32)
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "garbage_header.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not an image")
    (tmp_path / "truncated.png").write_bytes(data[:40])
    csv = tmp_path / "t.csv"
    csv.write_text("garbage_header.png,1,1,5,5\ntruncated.png,1,1,5,5\nok.png,1,1,5,5\n")
    quick = load_detection_set(csv)  # headers only: the truncated file still looks fine
    assert [r.path.name for r in quick.records] == ["truncated.png", "ok.png"]
    assert quick.problems[0].startswith(f"{csv}:1: unreadable image")
    full = load_detection_set(csv, verify=True)
    assert [r.path.name for r in full.records] == ["ok.png"] and full.unreadable_images == 2


def test_data_check_cli_prints_summary_and_problems(planted, capsys):
    assert main(["data", "check", str(planted)]) == 1
    out = capsys.readouterr().out
    for n in (2, 3, 4, 5, 8, 10, 11):
        assert f"{planted}:{n}:" in out
    assert "images" in out and "aspect ratio w/h" in out and "problems: 7" in out
    assert main(["data", "check", str(planted), "--json"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 2 and summary["faces"] == 3 and len(summary["problems"]) == 7
    assert sum(b["count"] for b in summary["size_histogram"]) == 3


def test_missing_path_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["data", "check", str(tmp_path / "nope.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.csv" in err[0]
    with pytest.raises(FileNotFoundError, match="nope"):
        load_detection_set(tmp_path / "nope")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        load_detection_set(tmp_path / "bad.json")


def test_images_dir_and_folder_lookup(tmp_path):
    _png(tmp_path / "pics" / "a.png", 40, 30)
    ann = tmp_path / "ann" / "train.csv"
    ann.parent.mkdir()
    ann.write_text("a.png,1,2,11,12\n")
    ds = load_detection_set(ann, images_dir=tmp_path / "pics")
    assert ds.problems == [] and ds.records[0].path == tmp_path / "pics" / "a.png"
    assert (ds.records[0].width, ds.records[0].height) == (40, 30)
    assert load_detection_set(tmp_path / "ann", images_dir=tmp_path / "pics").faces == 1  # folder with one CSV
    missing = load_detection_set(ann)  # not beside the CSV, nor in ann/images/
    assert missing.images == 0 and missing.missing_images == 1 and f"{ann}:1:" in missing.problems[0]


def _coco(tmp_path, **overrides):
    _png(tmp_path / "images" / "one.png", 100, 80)
    _png(tmp_path / "images" / "empty.png", 50, 50)
    data = {
        "images": [
            {"id": 7, "file_name": "one.png", "width": 100, "height": 80},
            {"id": 8, "file_name": "empty.png", "width": 60, "height": 50},
            {"id": 9, "file_name": "gone.png"},
        ],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 1, "bbox": [10, 20, 30, 40]},
            {"id": 2, "image_id": 7, "category_id": 2, "bbox": [0, 0, 5, 5]},
            {"id": 3, "image_id": 7, "category_id": 1, "bbox": [90, 70, 20, 20]},
            {"id": 4, "image_id": 99, "category_id": 1, "bbox": [1, 1, 2, 2]},
            {"id": 5, "image_id": 7, "category_id": 1, "bbox": [1, 1, 0, 5]},
            {"id": 6, "image_id": 7, "category_id": 1, "bbox": [5, 5, 10, 10], "iscrowd": 1},
            {"id": 7, "image_id": 7, "category_id": 1, "bbox": "oops"},
        ],
        "categories": [{"id": 1, "name": "face"}, {"id": 2, "name": "body"}],
    }
    data.update(overrides)
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path


def test_coco_loader(tmp_path):
    path = _coco(tmp_path)
    ds = load_detection_set(path)  # two categories, one named "face": that one
    boxes = {r.path.name: r.boxes for r in ds.records}
    np.testing.assert_array_equal(boxes["one.png"], [[10, 20, 40, 60], [90, 70, 100, 80]])
    assert boxes["empty.png"].shape == (0, 4) and ds.negatives == 1
    where = {p.split(": ")[1] for p in ds.problems}
    assert where == {"images[1]", "images[2]", "annotations[3]", "annotations[4]", "annotations[6]"}
    assert any("60x50" in p and "50x50" in p for p in ds.problems)  # header size wins
    assert (ds.clipped, ds.dropped, ds.crowd, ds.other_category, ds.missing_images) == (1, 1, 1, 1, 1)
    body = load_detection_set(path, category="body")
    assert {r.path.name: len(r.boxes) for r in body.records} == {"one.png": 1, "empty.png": 0}
    assert load_detection_set(path, category="2").faces == 1


def test_coco_ambiguous_category_is_an_error(tmp_path):
    path = _coco(tmp_path, categories=[{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}])
    with pytest.raises(ValueError, match="several categories"):
        load_detection_set(path)
    with pytest.raises(ValueError, match="no category 'face'"):
        load_detection_set(path, category="face")


def test_histogram_bins_by_hand():
    sizes = np.array([10.0, 16.0, 31.9, 600.0])
    counts = [b["count"] for b in histogram(sizes, SIZE_BINS)]
    assert counts == [1, 2, 0, 0, 0, 0, 1]
    aspects = np.array([0.2, 0.5, 1.0, 2.5, 3.0])
    assert [b["count"] for b in histogram(aspects, ASPECT_BINS)] == [1, 0, 1, 1, 0, 1, 1]
    assert histogram(aspects, ASPECT_BINS)[-1]["high"] is None and math.isinf(ASPECT_BINS[-1])


def test_split_records_is_fixed_and_disjoint(planted):
    records = load_detection_set(planted).records * 5
    kept, held = split_records(records, 0.2, seed=1)
    assert len(held) == 2 and len(kept) == 8
    again = split_records(records, 0.2, seed=1)
    assert [id(r) for r in again[1]] == [id(r) for r in held]
