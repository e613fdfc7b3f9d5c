"""Several data sets in one run: the sources YAML, the weighted sampler, training and validation per source.

Generated scenes only (tiny preset, 128-pixel inputs, a few iterations).
"""

import csv

import numpy as np
import pytest
import torch

from acfd.cli import main
from acfd.scenes.synth import write_dataset
from acfd.training.checkpoint import read_checkpoint
from acfd.training.data.sources import (
    Source,
    SourceError,
    SourceSampler,
    epoch_length,
    is_sources_file,
    read_sources,
    sources_from_flags,
)
from acfd.training.trainer import TrainOptions, train


@pytest.fixture(scope="module")
def two_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    for name, seed in (("a", 11), ("b", 12)):
        write_dataset(root / name / "train", images=8, seed=seed, size=(256, 160), progress=False)
        write_dataset(root / name / "val", images=4, seed=seed + 100, size=(256, 160), progress=False)
    return root


def test_yaml_paths_resolve_against_the_file_and_defaults_fill_in(tmp_path):
    (tmp_path / "cfg").mkdir()
    path = tmp_path / "cfg" / "data.yaml"
    path.write_text(
        "sources:\n"
        "  - {name: icf, train: split/train.csv, val: split/val.csv, images: /abs/images, weight: 2}\n"
        "  - {train: ../tv/scooby/train.json, format: coco}\n"
        "  - {val: ../tv/louie/val.json}\n"
    )
    assert is_sources_file(path)
    s = read_sources(path)
    assert s[0] == Source(
        "icf", str(tmp_path / "cfg/split/train.csv"), str(tmp_path / "cfg/split/val.csv"), "/abs/images", None, 2.0
    )
    assert s[1].name == "train" and s[1].weight == 1.0 and s[1].format == "coco" and s[1].val is None
    assert s[1].train == str(tmp_path / "cfg/../tv/scooby/train.json")
    assert s[2].train is None and s[2].name == "val"
    assert sources_from_flags((str(path),)) == s


@pytest.mark.parametrize(
    "text, says",
    [
        ("sources: []\n", "non-empty list under 'sources:'"),
        ("sources:\n  - {train: a.csv, wieght: 2}\n", "sources[0]: unknown keys ['wieght']"),
        ("sources:\n  - {train: a.csv, weight: -1}\n", "sources[0].weight: expected a number >= 0"),
        ("sources:\n  - {train: a.csv, weight: yes}\n", "sources[0].weight: expected a number >= 0"),
        ("sources:\n  - {name: x}\n", "sources[0]: needs 'train' or 'val'"),
        ("sources:\n  - {train: a.csv, format: xml}\n", "sources[0].format: 'xml' is not one of"),
        ("sources:\n  - a.csv\n", "sources[0]: expected a mapping"),
        ("sources:\n  - {train: [a.csv]}\n", "sources[0].train: expected a string"),
        ("sources: {train: : :\n", "not a readable YAML file"),
    ],
)
def test_a_broken_sources_file_is_one_line_naming_the_entry(tmp_path, text, says):
    path = tmp_path / "data.yaml"
    path.write_text(text)
    with pytest.raises(SourceError, match=None) as err:
        read_sources(path)
    assert says in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_flags_pair_each_val_with_its_data():
    s = sources_from_flags(("x/train.csv", "y/train.json"), ("x/val.csv", "y/val.json"), images="imgs")
    assert [(v.name, v.train, v.val, v.images) for v in s] == [
        ("train", "x/train.csv", "x/val.csv", "imgs"),
        ("train_2", "y/train.json", "y/val.json", "imgs"),
    ]
    assert [v.val for v in sources_from_flags(("a.csv", "b.csv"))] == [None, None]
    with pytest.raises(SourceError, match="one --val per --data"):
        sources_from_flags(("a.csv", "b.csv"), ("va.csv",))
    with pytest.raises(SourceError, match="one --val per --data"):
        sources_from_flags(("a.csv", "b.csv"), ("va.csv", "vb.csv", "vc.csv"))


def test_weights_decide_what_an_epoch_is():
    sizes, weights = [10, 7, 4, 5], [1.0, 2.0, 0.5, 0.0]
    sampler = SourceSampler(sizes, weights, seed=3)
    assert len(sampler) == epoch_length(sizes, weights) == 10 + 14 + 2 + 0
    order = np.array(list(sampler))
    counts = np.bincount(order, minlength=sum(sizes))
    assert (counts[:10] == 1).all()  # weight 1: each image once
    assert (counts[10:17] == 2).all()  # weight 2: each image twice
    assert counts[17:21].sum() == 2 and counts[17:21].max() == 1  # weight 0.5: two distinct of four
    assert counts[21:].sum() == 0  # weight 0: not drawn
    # a function of (seed, epoch) only: the same again, another epoch differs, sources are mixed
    assert list(SourceSampler(sizes, weights, seed=3)) == order.tolist()
    sampler.set_epoch(1)
    assert list(sampler) != order.tolist()
    assert (order[:13] >= 10).any() and (order[:13] < 10).any()


def test_ranks_split_one_epoch_evenly():
    sizes, weights = [5, 6], [1.0, 1.5]
    whole = SourceSampler(sizes, weights, seed=0).epoch_indices()
    ranks = [list(SourceSampler(sizes, weights, seed=0, rank=r, world_size=3)) for r in range(3)]
    assert len({len(r) for r in ranks}) == 1 and sum(map(len, ranks)) >= len(whole) == 5 + 9
    assert all(ranks)  # every rank has work
    dealt = np.empty(sum(map(len, ranks)), np.int64)
    for r, part in enumerate(ranks):
        dealt[r::3] = part
    assert dealt[: len(whole)].tolist() == whole.tolist()  # dealt out in order, padding from the start


def _opts(root, out, data, val, **kw):
    base = dict(
        data=data, val=val, out=str(out), preset="tiny", epochs=2, batch=4, size=128, workers=0,
        progress=False, seed=5, kernels="torch", log_every=1,
    )  # fmt: skip
    base.update(kw)
    return TrainOptions(**base)


def test_two_sources_train_and_validate_each(two_sets, tmp_path):
    yaml_path = tmp_path / "data.yaml"
    yaml_path.write_text(
        f"sources:\n"
        f"  - {{name: a, train: {two_sets}/a/train, val: {two_sets}/a/val, weight: 1.5}}\n"
        f"  - {{name: b, train: {two_sets}/b/train, val: {two_sets}/b/val, weight: 0.5}}\n"
    )
    result = train(_opts(two_sets, tmp_path / "run", (str(yaml_path),), None))
    assert result.status == "done" and result.iteration == 2 * (12 + 4) // 4
    with open(tmp_path / "run" / "metrics.csv", newline="") as f:
        epochs = [r for r in csv.DictReader(f) if r["kind"] == "epoch"]
    assert len(epochs) == 2
    for row in epochs:
        a, b = float(row["val_ap_a"]), float(row["val_ap_b"])
        assert float(row["val_ap"]) == pytest.approx((a + b) / 2, abs=1e-5)
    last = read_checkpoint(tmp_path / "run" / "last.pt")
    assert set(last["val_ap_sources"]) == {"a", "b"}
    assert (tmp_path / "run" / "curves.png").stat().st_size > 0


def test_repeated_flags_equal_the_yaml(two_sets, tmp_path):
    a, b = str(two_sets / "a"), str(two_sets / "b")
    flags = train(_opts(two_sets, tmp_path / "f", (a + "/train", b + "/train"), (a + "/val", b + "/val"), epochs=1))
    yaml_path = tmp_path / "data.yaml"
    yaml_path.write_text(f"sources:\n  - {{train: {a}/train, val: {a}/val}}\n  - {{train: {b}/train, val: {b}/val}}\n")
    from_yaml = train(_opts(two_sets, tmp_path / "y", (str(yaml_path),), None, epochs=1))
    pa, pb = read_checkpoint(tmp_path / "f" / "last.pt"), read_checkpoint(tmp_path / "y" / "last.pt")
    assert flags.iteration == from_yaml.iteration == 4
    assert all(torch.equal(pa["model"][k], pb["model"][k]) for k in pa["model"])


def test_source_problems_are_one_line(two_sets, tmp_path, capsys):
    bad = tmp_path / "data.yaml"
    bad.write_text(
        f"sources:\n  - {{name: a, train: {two_sets}/a/train}}\n  - {{name: gone, train: {tmp_path}/nope.csv}}\n"
    )
    code = main(["train", "--data", str(bad), "--out", str(tmp_path / "r"), "--preset", "tiny", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "source 'gone'" in err and "nope.csv" in err and "\n" not in err
    (tmp_path / "x.csv").write_text("")
    code = main(["train", "--data", str(bad), "--val", str(tmp_path / "x.csv"), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "is a sources file: give each source's 'val' in it" in err


def test_pause_after_stops_at_an_epoch_end_and_resume_finishes_the_plan(two_sets, tmp_path, capsys):
    a = str(two_sets / "a")
    base = ["train", "--data", a + "/train", "--out", str(tmp_path / "run"), "--preset", "tiny", "--epochs", "3"]
    base += ["--batch", "4", "--size", "128", "--workers", "0", "--kernels", "torch", "--no-progress", "--seed", "1"]
    assert main(base + ["--pause-after", "0.0001"]) == 0
    assert "paused by --pause-after 0.0001 after epoch 1 of 3 (continue with --resume)" in capsys.readouterr().out
    assert read_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 1
    assert main(base + ["--resume"]) == 0
    assert "trained 3 epochs (6 iterations)" in capsys.readouterr().out
    assert read_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 3
    assert main(base[:-2] + ["--pause-after", "0"]) == 2
