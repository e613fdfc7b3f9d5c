"""scripts/pack_data.py: a training set re-encoded to travel, boxes scaled, a budget it refuses to exceed."""

import json

import numpy as np
import pytest

from acfd.scenes.synth import write_dataset
from acfd.training.data.annotations import load_detection_set
from file_modules import load_script


pack_data = load_script("pack_data")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    write_dataset(root / "a", images=4, seed=1, size=(320, 192), progress=False)
    write_dataset(root / "b", images=3, seed=2, size=(160, 256), progress=False)
    (root / "sources.yaml").write_text(
        "sources:\n"
        "  - {name: a, train: a/annotations.json, val: a/annotations.csv}\n"
        "  - {name: b, train: b/annotations.json, weight: 2}\n"
    )
    return root


def test_sources_yaml_packs_train_and_val_with_boxes_scaled(scenes, tmp_path, capsys):
    out = tmp_path / "travel"
    code = pack_data.main(
        [
            str(scenes / "sources.yaml"),
            str(out),
            "--max-side",
            "160",
            "--quality",
            "70",
            "--with-val",
            "--budget-mib",
            "5",
        ]
    )
    assert code == 0, capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["images"] == 7 and manifest["sources"]["a"]["parts"] == ["train", "val"]
    on_disk = sum(
        p.stat().st_size for p in out.rglob("*") if p.is_file() and p.name not in ("manifest.json", "sources.yaml")
    )
    assert manifest["bytes"] == on_disk
    for name, scale in (("a", 0.5), ("b", 160 / 256)):
        orig = load_detection_set(scenes / name / "annotations.json")
        packed = load_detection_set(out / name / "train.json")
        assert [r.path.suffix for r in packed.records] == [".webp"] * len(orig.records)
        for o, p in zip(orig.records, packed.records):
            assert (p.width, p.height) == (round(o.width * scale), round(o.height * scale))
            np.testing.assert_allclose(p.boxes, o.boxes * np.float32(p.width / o.width), atol=2e-3)
    # the sources file travels: relative paths, the packed parts, loadable as acfd train reads it
    from acfd.training.data.sources import load_sources, read_sources

    loaded = load_sources(read_sources(out / "sources.yaml"))
    assert [s.name for s in loaded.sources] == ["a", "b"] and loaded.val[0] is not None and loaded.val[1] is None


def test_single_file_without_cap_keeps_size_and_jpeg(scenes, tmp_path):
    out = tmp_path / "one"
    assert (
        pack_data.main([str(scenes / "a" / "annotations.csv"), str(out), "--codec", "jpeg", "--budget-mib", "5"]) == 0
    )
    packed = load_detection_set(out / "annotations" / "train.json")
    orig = load_detection_set(scenes / "a" / "annotations.csv")
    assert [(r.width, r.height) for r in packed.records] == [(320, 192)] * len(orig.records)
    np.testing.assert_allclose(
        np.concatenate([r.boxes for r in packed.records]), np.concatenate([r.boxes for r in orig.records])
    )


def test_over_budget_refuses_in_one_line_and_leaves_nothing(scenes, tmp_path, capsys):
    out = tmp_path / "big"
    assert pack_data.main([str(scenes / "sources.yaml"), str(out), "--budget-mib", "0.001"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "over the budget of 0.0 MiB" in err and "the whole set would be about" in err
    assert not out.exists()


@pytest.mark.parametrize(
    "args, says",
    [
        (["missing.yaml", "OUT"], "no such file"),
        (["SRC", "OUT", "--quality", "0"], "--quality: expected 1..100"),
        (["SRC", "OUT", "--codec", "avif"], "'avif' is not one of webp, jpeg"),
        (["SRC", "OUT", "--budget-mib", "lots"], "expected 'auto' or a number"),
        (["SRC", "FULL"], "exists and is not an empty folder"),
        (["SRC", "OUT", "--images", "x"], "is a sources file"),
    ],
)
def test_bad_inputs_say_what_in_one_line(scenes, tmp_path, capsys, args, says):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    subst = {"SRC": str(scenes / "sources.yaml"), "OUT": str(tmp_path / "out"), "FULL": str(tmp_path / "full")}
    budget = [] if "--budget-mib" in args else ["--budget-mib", "5"]
    assert pack_data.main([subst.get(a, a) for a in args] + budget) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("pack_data: ") and says in err, err
    assert not (tmp_path / "out").exists()


def test_bad_annotations_name_the_source(tmp_path, capsys):
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "s.yaml").write_text("sources:\n  - {name: x, train: bad.json}\n")
    assert pack_data.main([str(tmp_path / "s.yaml"), str(tmp_path / "out"), "--budget-mib", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "source 'x'" in err
