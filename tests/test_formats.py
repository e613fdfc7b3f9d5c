"""YOLO and Pascal VOC loaders, format detection, and ``acfd synth --format``: sets built from generated
scenes, then broken on purpose (broken lines, missing images, a label file without an image,
degenerate boxes, several classes, non-ASCII class names); every problem is named with its file and
line, boxes are clipped or dropped and counted, and fatal input fails with one readable line."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from acfd.cli import main
from acfd.training.data.annotations import load_detection_set

SIZE = "96x64"


@pytest.fixture(scope="module")
def synth_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("formats")
    for fmt in ("coco", "yolo", "voc"):
        assert main(["synth", str(root / fmt), "--images", "5", "--seed", "3", "--size", SIZE, "--format", fmt]) == 0
    return root


def _copy(synth_sets, fmt, tmp_path) -> Path:
    return Path(shutil.copytree(synth_sets / fmt, tmp_path / fmt))


def _boxes(ds):
    return {r.path.name: r.boxes for r in ds.records}


def test_synth_formats_hold_the_same_scenes(synth_sets):
    coco, yolo, voc = (load_detection_set(synth_sets / f) for f in ("coco", "yolo", "voc"))
    assert (yolo.format, voc.format) == ("yolo", "voc") and yolo.problems == voc.problems == []
    assert yolo.images == voc.images == coco.images == 5 and yolo.faces == voc.faces == coco.faces > 0
    assert yolo.negatives == voc.negatives == coco.negatives
    for name, boxes in _boxes(coco).items():
        np.testing.assert_allclose(_boxes(yolo)[name], boxes, atol=0.01)
        np.testing.assert_array_equal(_boxes(voc)[name], boxes)
    assert (synth_sets / "yolo" / "data.yaml").is_file() and (synth_sets / "voc" / "Annotations").is_dir()


def test_yolo_planted_problems(synth_sets, tmp_path):
    root = _copy(synth_sets, "yolo", tmp_path)
    (root / "data.yaml").unlink()  # the bare images/ + labels/ pair
    (root / "labels" / "classes.txt").write_text("face\n")
    label = root / "labels" / "synth_00000.txt"
    label.write_text(
        "\n".join(
            [
                "0 0.5 0.5 0.25 0.5",  # 1 good: 24x32 at the centre of 96x64
                "0 0.5 0.5",  # 2 too few fields
                "x 0.5 0.5 0.1 0.1",  # 3 class is not an id
                "0 0.5 nan 0.1 0.1",  # 4 not finite
                "0 48 32 10 10",  # 5 pixels, not normalised
                "0 0.5 0.5 0 0.2",  # 6 zero width: dropped
                "0 0.95 0.5 0.2 0.2",  # 7 crosses the right border: clipped
                "0 0.1 0.1 0.2 0.1 0.2 0.3",  # 8 a polygon: its bounding box
            ]
        )
        + "\n"
    )
    (root / "labels" / "ghost.txt").write_text("0 0.5 0.5 0.1 0.1\n")  # a label file without an image
    (root / "labels" / "synth_00001.txt").unlink()  # an image without a label file: a negative
    (root / "images" / "broken.png").write_bytes(b"not an image")
    ds = load_detection_set(root)
    where = sorted(p.split(": ")[0] for p in ds.problems)
    assert where == sorted(
        [f"{label}:{n}" for n in (2, 3, 4, 5, 6)] + [str(root / "labels" / "ghost.txt"), str(root / "images")]
    )
    text = "\n".join(ds.problems)
    assert "got 3 fields" in text and "'x'" in text and "pixels?" in text and "without an image" in text
    assert (ds.bad_entries, ds.dropped, ds.clipped, ds.orphan_labels, ds.unreadable_images) == (4, 1, 1, 1, 1)
    boxes = _boxes(ds)
    np.testing.assert_allclose(
        boxes["synth_00000.png"], [[36, 16, 60, 48], [81.6, 25.6, 96, 38.4], [9.6, 6.4, 19.2, 19.2]], atol=1e-4
    )
    assert len(boxes["synth_00001.png"]) == 0 and ds.class_name == "face"


def test_yolo_data_yaml_splits_classes_and_non_ascii_names(synth_sets, tmp_path):
    root = tmp_path / "roboflow"
    for split in ("train", "valid"):
        shutil.copytree(synth_sets / "yolo" / "images", root / split / "images")
        (root / split / "labels").mkdir()
    (root / "train" / "labels" / "synth_00002.txt").write_text("0 0.5 0.5 0.5 0.5\n1 0.25 0.25 0.1 0.1\n")
    (root / "valid" / "labels" / "synth_00003.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    yaml_file = root / "data.yaml"
    yaml_file.write_text("train: train/images\nval: valid/images\nnc: 2\nnames: ['顔', 'Gesicht']\n", encoding="utf-8")
    with pytest.raises(
        ValueError, match=r"several classes \(顔 \(id 0\), Gesicht \(id 1\)\); choose one with --category"
    ):
        load_detection_set(yaml_file)
    train = load_detection_set(root, category="顔")  # the folder finds its data.yaml; train by default
    assert (train.split, train.faces, train.other_category, train.images) == ("train", 1, 1, 5)
    val = load_detection_set(yaml_file, category="1", split="val")
    assert (val.split, val.faces, val.class_name) == ("val", 1, "Gesicht")
    with pytest.raises(ValueError, match=r"no 'test' split \(it names: train, val\)"):
        load_detection_set(yaml_file, category="1", split="test")
    with pytest.raises(ValueError, match="no class 'cat'"):
        load_detection_set(yaml_file, category="cat")


def test_voc_planted_problems_difficult_and_classes(synth_sets, tmp_path):
    root = _copy(synth_sets, "voc", tmp_path)
    ann = root / "Annotations"
    (ann / "synth_00000.xml").write_text(
        """<?xml version="1.0" encoding="utf-8"?>
<annotation>
  <filename>synth_00000.png</filename>
  <size><width>96</width><height>64</height><depth>3</depth></size>
  <object><name>Gesicht</name><difficult>0</difficult>
    <bndbox><xmin>11</xmin><ymin>21</ymin><xmax>40</xmax><ymax>50</ymax></bndbox></object>
  <object><name>Gesicht</name><difficult>1</difficult>
    <bndbox><xmin>51</xmin><ymin>1</ymin><xmax>70</xmax><ymax>20</ymax></bndbox></object>
  <object><name>Gesicht</name><difficult>0</difficult>
    <bndbox><xmin>50</xmin><ymin>10</ymin><xmax>40</xmax><ymax>20</ymax></bndbox></object>
  <object><name>Gesicht</name>
    <bndbox><xmin>a</xmin><ymin>10</ymin><xmax>40</xmax><ymax>20</ymax></bndbox></object>
  <object><name>Gesicht</name><difficult>0</difficult>
    <bndbox><xmin>81</xmin><ymin>51</ymin><xmax>120</xmax><ymax>70</ymax></bndbox></object>
  <object><name>Körper</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>
</annotation>
""",
        encoding="utf-8",
    )
    (ann / "synth_00001.xml").write_text("<annotation><filename>synth_00001.png</filename><object>")  # broken
    (ann / "gone.xml").write_text("<annotation><filename>gone.png</filename></annotation>")  # missing image
    (ann / "other.xml").write_text("<notvoc/>")
    for xml in ann.glob("synth_0000[2-4].xml"):
        xml.write_text(xml.read_text().replace("<name>face</name>", "<name>Gesicht</name>"))
    with pytest.raises(ValueError, match=r"several object names .*Körper \(1\).*; choose one with --category"):
        load_detection_set(root)
    ds = load_detection_set(root, category="Gesicht")
    where = sorted(p.split(": ")[0] for p in ds.problems)
    first = ann / "synth_00000.xml"
    assert where == sorted(
        [f"{first}:9", f"{first}:11", f"{ann / 'synth_00001.xml'}:1", f"{ann / 'gone.xml'}:1", f"{ann / 'other.xml'}:1"]
    )
    assert "not valid XML" in "\n".join(ds.problems) and "gone.png" in "\n".join(ds.problems)
    assert (ds.difficult, ds.other_category, ds.dropped, ds.clipped, ds.missing_images) == (1, 1, 1, 1, 1)
    rec = next(r for r in ds.records if r.path.name == "synth_00000.png")
    np.testing.assert_array_equal(rec.boxes, [[10, 20, 40, 50], [80, 50, 96, 64]])  # 1-based xmin -> continuous
    np.testing.assert_array_equal(rec.ignore, [[50, 0, 70, 20]])  # difficult: an ignore region
    skipped = load_detection_set(root, category="Gesicht", keep_ignore=False)
    assert skipped.ignore_regions == 0 and skipped.difficult == 1 and not skipped.keep_ignore


def test_voc_image_sets_choose_a_split(synth_sets, tmp_path):
    root = _copy(synth_sets, "voc", tmp_path)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "val.txt").write_text("synth_00001\nsynth_00004\nnope\n")
    ds = load_detection_set(root, split="val")
    assert sorted(r.path.name for r in ds.records) == ["synth_00001.png", "synth_00004.png"]
    assert ds.problems == [
        f"{root / 'ImageSets/Main/val.txt'}:3: no annotation file nope.xml in {root / 'Annotations'}"
    ]
    assert load_detection_set(root, split="train").images == 5  # no train.txt: every annotation file


def test_format_detection_and_forcing(synth_sets, tmp_path):
    both = tmp_path / "both"
    shutil.copytree(synth_sets / "yolo", both)
    shutil.copy(synth_sets / "coco" / "annotations.json", both / "annotations.json")
    with pytest.raises(
        ValueError,
        match=r"several formats: coco \(annotations.json\), yolo \(data.yaml\); "
        r"choose one with --format",
    ):
        load_detection_set(both)
    assert load_detection_set(both, format="yolo").format == "yolo"
    assert load_detection_set(both, format="coco").faces == load_detection_set(both, format="yolo").faces
    with pytest.raises(FileNotFoundError, match="no voc annotations in this folder"):
        load_detection_set(both, format="voc")
    with pytest.raises(FileNotFoundError, match="no annotations found in this folder"):
        load_detection_set(tmp_path / "both" / "labels" / ".." / "images")
    one = load_detection_set(synth_sets / "voc" / "Annotations" / "synth_00000.xml")  # a single XML file
    assert one.images == 1 and one.records[0].path.parent.name == "JPEGImages"


def test_data_check_cli_on_yolo_and_voc(synth_sets, capsys):
    assert main(["data", "check", str(synth_sets / "yolo")]) == 0
    out = capsys.readouterr().out
    assert "(YOLO, split train, class face)" in out and "images                   5" in out
    assert main(["data", "check", str(synth_sets / "voc"), "--format", "voc"]) == 0
    assert "(Pascal VOC, class face)" in capsys.readouterr().out
    assert main(["data", "check", str(synth_sets / "yolo"), "--format", "voc"]) == 2
    assert "no voc annotations" in capsys.readouterr().err
