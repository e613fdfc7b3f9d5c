"""``acfd eval`` over several hold-outs (a sources YAML) and ``--errors``; the mean-F1 threshold by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from acfd.cli import main
from acfd.training.evaluation.operating_point import best_f1, best_mean_f1


@pytest.fixture(scope="module")
def two_holdouts(tmp_path_factory):
    from acfd.scenes.synth import write_dataset

    root = tmp_path_factory.mktemp("holdouts")
    write_dataset(root / "a", images=3, seed=21, size=(192, 128), progress=False)
    write_dataset(root / "b", images=2, seed=22, size=(192, 128), progress=False)
    (root / "data.yaml").write_text("sources:\n  - {name: alpha, val: a}\n  - {name: beta, train: b, val: b}\n")
    return root


def _eval(argv, capsys):
    code = main(["eval", "--preset", "tiny", "--scales", "128x192", "--no-progress", *argv])
    return code, capsys.readouterr()


def test_each_source_apart_then_the_mean(two_holdouts, tmp_path, capsys):
    report, png = tmp_path / "eval.json", tmp_path / "errors.png"
    code, out = _eval(["--data", str(two_holdouts / "data.yaml"), "--json", str(report), "--errors", str(png)], capsys)
    assert code == 0, out.err
    data = json.loads(report.read_text())
    assert list(data["sources"]) == ["alpha", "beta"]
    assert not {"per_image", "paths"} & set(data["sources"]["alpha"])  # --errors' inputs stay out of the JSON
    # each source's figures are those of evaluating its folder alone
    for name, folder in (("alpha", "a"), ("beta", "b")):
        single = tmp_path / f"{name}.json"
        assert _eval(["--data", str(two_holdouts / folder), "--json", str(single)], capsys)[0] == 0
        alone = json.loads(single.read_text())
        assert data["sources"][name]["ap"] == pytest.approx(alone["ap"])
        assert data["sources"][name]["faces"] == alone["faces"]
    aps = [data["sources"][n]["ap"] for n in ("alpha", "beta")]
    assert data["mean_ap"] == pytest.approx(sum(aps) / 2)
    assert set(data["best_f1"]["f1_per_source"]) == {"alpha", "beta"}
    assert 0.0 <= data["best_f1"]["threshold"] <= 1.0
    # the breakdown: a row per source and size, the table in the report, a PNG
    assert "alpha: all" in out.out and "beta: >=96" in out.out and "mean mAP@0.5 over 2 sources" in out.out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_errors_of_one_set_row_all_has_its_ap(two_holdouts, tmp_path, capsys):
    png = tmp_path / "e.png"
    code, out = _eval(["--data", str(two_holdouts / "a"), "--errors", str(png)], capsys)
    assert code == 0
    row = next(line for line in out.out.splitlines() if line.startswith("all "))
    mean_ap = float(out.out.strip().splitlines()[-1].split()[-1])
    assert float(row.split()[2]) == pytest.approx(100 * mean_ap, abs=0.006)
    assert png.is_file()
    gallery = tmp_path / "e_background.png"  # beside it: what the model takes for faces
    assert gallery.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"highest score first: {gallery}" in out.out


def test_a_sources_file_without_holdouts_is_one_line(two_holdouts, tmp_path, capsys):
    path = tmp_path / "train_only.yaml"
    path.write_text(f"sources:\n  - {{train: {two_holdouts / 'a'}}}\n")
    code, out = _eval(["--data", str(path)], capsys)
    assert code == 2 and "no source has a 'val' hold-out" in out.err and out.err.count("\n") == 1


def test_mean_f1_threshold_by_hand():
    # set 1: scores 0.9 (TP), 0.6 (FP), 0.3 (TP) of 2 faces; set 2: 0.8 (TP), 0.5 (TP) of 4 faces.
    c1 = (np.array([1.0, 0.5, 2 / 3]), np.array([0.5, 0.5, 1.0]), np.array([0.9, 0.6, 0.3]))
    c2 = (np.array([1.0, 1.0]), np.array([0.25, 0.5]), np.array([0.8, 0.5]))
    # F1 at each threshold: t=0.9: 2/3, 0 -> (set 2 keeps nothing) mean 1/3; t=0.8: 2/3, 0.4 -> 0.533;
    # t=0.6: 0.5, 0.4 -> 0.45; t=0.5: 0.5, 2/3 -> 0.583; t=0.3: 0.8, 2/3 -> 0.733 (best)
    best = best_mean_f1([c1, c2])
    assert best["threshold"] == pytest.approx(0.3)
    assert best["f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert best["f1_per_set"] == pytest.approx([0.8, 2 / 3])
    # one set: the same cut as best_f1
    assert best_mean_f1([c1])["threshold"] == best_f1(*c1)["threshold"]
    # a set without detections counts F1 0 everywhere
    empty = (np.zeros(0), np.zeros(0), np.zeros(0))
    assert best_mean_f1([c1, empty])["f1"] == pytest.approx(0.8 / 2)
    assert best_mean_f1([empty])["f1"] == 0.0
