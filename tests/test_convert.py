"""``acfd data convert`` between every pair of the four formats gives back the same boxes (within 0.01 px
through YOLO's normalised floats), keeps negatives and ignore regions where the target can hold them
and says what it left out; ``acfd data show`` writes its picture."""

from __future__ import annotations

import json
from itertools import permutations

import cv2
import numpy as np
import pytest

from acfd.cli import main
from acfd.training.data.annotations import load_detection_set
from acfd.training.data.annotations_write import num, write_set

FORMATS = ("coco", "csv", "yolo", "voc")
HOLDS_NEGATIVES = {"coco", "yolo", "voc"}
HOLDS_IGNORE = {"coco", "voc"}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """Generated scenes as COCO, plus a fractional box, a box crossing the border and a crowd region."""
    root = tmp_path_factory.mktemp("convert")
    assert main(["synth", str(root / "coco"), "--images", "4", "--seed", "5", "--size", "97x61"]) == 0
    ann = root / "coco" / "annotations.json"
    data = json.loads(ann.read_text())
    first, second, *_, last = [im["id"] for im in data["images"]]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != last]  # a negative
    extra = [
        {"image_id": first, "bbox": [10.25, 3.5, 20.125, 11.75]},
        {"image_id": first, "bbox": [90.3, 50.7, 20, 20]},  # clipped to 97x61 on load
        {"image_id": second, "bbox": [1, 2, 30, 20], "iscrowd": 1},
        {"image_id": second, "bbox": [40, 20, 10, 10]},
    ]
    for i, e in enumerate(extra):
        data["annotations"].append({"id": 1000 + i, "category_id": 1, "iscrowd": 0, **e})
    ann.write_text(json.dumps(data))
    ds = load_detection_set(ann)
    assert ds.ignore_regions == 1 and ds.negatives >= 1 and ds.clipped == 1
    sets = {"coco": root / "coco"}
    for fmt in FORMATS[1:]:
        write_set(ds, fmt, root / fmt)
        sets[fmt] = root / fmt
    return load_detection_set(ann), sets, root


def _by_name(ds):
    return {r.path.name: r for r in ds.records}


@pytest.mark.parametrize("src,dst", list(permutations(FORMATS, 2)))
def test_round_trip_of_every_pair(base, src, dst, tmp_path):
    original, sets, _ = base
    source = load_detection_set(sets[src])
    report = write_set(source, dst, tmp_path / "out")
    back = _by_name(load_detection_set(tmp_path / "out"))
    expected = {name: r for name, r in _by_name(original).items() if len(r.boxes) or ({src, dst} <= HOLDS_NEGATIVES)}
    assert sorted(back) == sorted(expected)
    atol = 0.01 if "yolo" in (src, dst) else 1e-4
    for name, rec in expected.items():
        np.testing.assert_allclose(back[name].boxes, rec.boxes, atol=atol, rtol=0, err_msg=f"{src}->{dst} {name}")
        keeps_ignore = {src, dst} <= HOLDS_IGNORE
        np.testing.assert_allclose(back[name].ignore, rec.ignore if keeps_ignore else np.zeros((0, 4)), atol=1e-4)
    if dst not in HOLDS_IGNORE and src in HOLDS_IGNORE:
        assert "1 ignore regions" in report.lost
    if dst == "csv" and src in HOLDS_NEGATIVES:
        assert any("images without faces" in lost for lost in report.lost)


def test_coordinate_text_is_short_and_exact():
    assert [num(v) for v in (10, 10.25, np.float32(20.3), 1 / 3)] == ["10", "10.25", "20.3", "0.3333"]
    assert np.float32(float(num(np.float32(4095.123)))) == np.float32(4095.123)


def test_convert_cli_and_what_it_cannot_hold(base, tmp_path, capsys):
    _, sets, _ = base
    assert main(["data", "convert", str(sets["coco"]), "--to", "yolo", str(tmp_path / "y")]) == 0
    out = capsys.readouterr().out
    assert "as yolo (data.yaml, images/, labels/)" in out and "yolo cannot hold: 1 ignore regions (left out)" in out
    assert main(["data", "convert", str(sets["coco"]), "--to", "voc", str(tmp_path / "y")]) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err
    assert main(["data", "convert", str(tmp_path / "nope"), "--to", "voc", str(tmp_path / "v")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_data_show_writes_a_grid_with_histograms(base, tmp_path, capsys):
    _, sets, _ = base
    out = tmp_path / "grid.png"
    assert main(["data", "show", str(sets["voc"]), "--n", "4", "--columns", "2", "--out", str(out)]) == 0
    assert "4 of 4 images" in capsys.readouterr().out
    picture = cv2.imread(str(out))
    assert picture is not None and picture.shape[0] > 200 and picture.shape[1] > 400
    orange = (picture[:, :, 2] > 200) & (abs(picture[:, :, 1].astype(int) - 140) < 30) & (picture[:, :, 0] < 60)
    assert orange.sum() > 20  # the ignore region is drawn in its own colour
    assert main(["data", "show", str(sets["voc"]), "--out", str(tmp_path / "no" / "grid.png")]) == 2
