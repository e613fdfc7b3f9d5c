"""``acfd train`` end to end on generated scenes: files, learning, exact resume, NaN stop, errors.

Small on purpose (tiny preset, 128-pixel inputs, a few dozen iterations): the full-size learning run
is recorded in benchmarks/RESULTS.md.
"""

import csv

import pytest
import torch

from acfd.cli import main
from acfd.training.checkpoint import read_checkpoint
from acfd.scenes.synth import write_dataset
from acfd.training.trainer import TrainOptions, train

SIZE = "128"


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    write_dataset(root / "train", images=16, seed=1, size=(256, 160), progress=False)
    write_dataset(root / "val", images=12, seed=2, size=(256, 160), progress=False)
    write_dataset(root / "small", images=8, seed=5, size=(256, 160), progress=False)
    return root


def _rows(path, kind):
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f) if r["kind"] == kind]


# A quarter of the paper's LR: a run this short sits in the noisy first phase of training at the
# full rate (the loss rises before it falls); the learning run at the paper's rate is in RESULTS.md.
SHORT_RUN_PRESET = "base: tiny\ntrain:\n  base_lr: 0.01\n"


def _fixed_batch_loss(model, preset, data) -> float:
    """Loss of ``model`` (batch-statistics mode) on all images of ``data``, resized, not augmented."""
    from acfd.training.data.annotations import load_detection_set
    from acfd.training.data.dataset import DetectionDataset, collate
    from acfd.training.loss import DetectionLoss

    dataset = DetectionDataset(load_detection_set(data).records, train=False, size=int(SIZE))
    images, gt, count = collate([dataset[i] for i in range(len(dataset))])
    model.train()
    with torch.no_grad():
        logits, deltas = model(images)
        return float(
            DetectionLoss(preset.train, "torch")(logits, deltas, model.anchors(*images.shape[-2:]), gt, count).total
        )


@pytest.mark.slow
def test_cli_run_learns_and_writes_its_files(scenes, tmp_path, capsys):
    from acfd.training.checkpoint import load_model
    from acfd.training.model import build_model

    preset_file = tmp_path / "short.yaml"
    preset_file.write_text(SHORT_RUN_PRESET)
    run = tmp_path / "run"
    args = [
        "train",
        "--data",
        str(scenes / "train"),
        "--val",
        str(scenes / "val"),
        "--preset",
        str(preset_file),
        "--epochs",
        "12",
        "--batch",
        "4",
        "--out",
        str(run),
        "--size",
        SIZE,
        "--workers",
        "0",
        "--eval-every",
        "6",
        "--log-every",
        "4",
        "--seed",
        "0",
        "--no-progress",
    ]
    assert main(args) == 0
    for name in ("last.pt", "best.pt", "metrics.csv", "curves.png", "command.txt", "config.yaml"):
        assert (run / name).is_file(), name
    assert "trained 12 epochs (48 iterations)" in capsys.readouterr().out
    steps = _rows(run / "metrics.csv", "iter")
    epochs = _rows(run / "metrics.csv", "epoch")
    assert [int(r["iteration"]) for r in steps] == list(range(4, 49, 4))
    assert len(epochs) == 12 and [e["val_ap"] != "" for e in epochs] == [False] * 5 + [True] + [False] * 5 + [True]

    # the loss falls on the training images and on unseen scenes (another seed), same initial weights.
    # About 4% in these 48 steps of heavy augmentation (train 5.96 -> 5.71 on an AMD EPYC), under 1%
    # on the unseen scenes; mAP@0.5
    # of so short a run is ~1e-4, noise, so the recorded val_ap is only checked to be a number.
    trained, preset, _ = load_model(run / "last.pt")
    torch.manual_seed(0)
    untrained = build_model(preset)
    for data, factor in ((scenes / "train", 0.98), (scenes / "val", 1.0)):  # val: 6.19 -> 6.14
        before = _fixed_batch_loss(untrained, preset, data)
        after = _fixed_batch_loss(trained, preset, data)
        assert after < factor * before, (data.name, before, after)
    assert 0.0 <= float(epochs[-1]["val_ap"]) <= 1.0

    # acfd eval reads the checkpoint
    assert main(["eval", "--weights", str(run / "last.pt"), "--data", str(scenes / "val"), "--no-progress"]) == 0


def _opts(data, out, **kw):
    base = dict(
        data=str(data),
        out=str(out),
        preset="tiny",
        epochs=3,
        batch=4,
        size=int(SIZE),
        workers=0,
        progress=False,
        seed=7,
        kernels="torch",
        log_every=1,
    )
    base.update(kw)
    return TrainOptions(**base)


# The full recipe on: bf16 autocast, weight EMA with a short ramp (so the average differs from the
# weights), mosaic and multi-scale batches.
RESUME_PRESET = """base: tiny
train:
  ema_decay: 0.9
  ema_tau: 2
  mosaic_prob: 0.5
  multiscale: [0.75, 1.0, 1.25]
"""


def _same_rng(a: dict, b: dict) -> bool:
    import numpy as np

    return (
        a["python"] == b["python"]
        and torch.equal(a["torch"], b["torch"])
        and all(np.array_equal(x, y) for x, y in zip(a["numpy"], b["numpy"]))
    )


@pytest.fixture
def rng_each_epoch(monkeypatch):
    """A draw from the global generators at every epoch end, before the checkpoint takes their state
    (as a layer with dropout would draw): the loop itself draws none (its loader seeds its workers
    from a generator of its own), so without this the RNG comparisons below would have nothing to catch."""
    import random

    import numpy as np

    from acfd.training import trainer

    end_epoch = trainer._end_epoch

    def drawing(*args, **kwargs):
        torch.rand(1), np.random.rand(), random.random()
        return end_epoch(*args, **kwargs)

    monkeypatch.setattr(trainer, "_end_epoch", drawing)


@pytest.mark.slow
def test_interrupted_and_resumed_equals_uninterrupted(scenes, tmp_path, rng_each_epoch):
    preset = tmp_path / "resume.yaml"
    preset.write_text(RESUME_PRESET)
    opts = dict(preset=str(preset), precision="bf16", workers=1)
    straight = train(_opts(scenes / "small", tmp_path / "a", **opts))
    assert straight.status == "done" and straight.iteration == 6

    def stop_after_first(epoch):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_opts(scenes / "small", tmp_path / "b", on_epoch_end=stop_after_first, **opts))
    first = read_checkpoint(tmp_path / "b" / "last.pt")
    assert (first["epoch"], first["iteration"], first["ema_updates"]) == (1, 2, 2)
    # something else uses the global generators between the two processes' lives
    torch.manual_seed(12345)
    resumed = train(_opts(scenes / "small", tmp_path / "b", resume=True, **opts))
    assert resumed.status == "done" and resumed.iteration == 6

    a = read_checkpoint(tmp_path / "a" / "last.pt")
    b = read_checkpoint(tmp_path / "b" / "last.pt")
    for key in ("model", "train_model"):  # the EMA and the raw weights
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)
    assert not all(torch.equal(a["model"][n], a["train_model"][n]) for n in a["model"])  # the EMA is not a copy
    assert a["ema_updates"] == b["ema_updates"] == 6
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    # both runs end with the same generator states (a resume that skipped restoring them would not:
    # the data loader draws its base seed from torch's generator every epoch)
    assert _same_rng(straight.rng, resumed.rng)
    assert _same_rng(a["rng"], b["rng"])
    # the resumed run's log has each iteration once
    iters = [int(r["iteration"]) for r in _rows(tmp_path / "b" / "metrics.csv", "iter")]
    assert iters == [1, 2, 3, 4, 5, 6]


@pytest.mark.slow
def test_resume_without_restoring_rng_is_caught(scenes, tmp_path, monkeypatch, rng_each_epoch):
    """The comparison above has teeth: with ``restore_rng_state`` a no-op the end states differ."""
    from acfd.training import trainer

    straight = train(_opts(scenes / "small", tmp_path / "a", epochs=2))

    def stop_after_first(epoch):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_opts(scenes / "small", tmp_path / "b", epochs=2, on_epoch_end=stop_after_first))
    monkeypatch.setattr(trainer, "restore_rng_state", lambda state: None)
    resumed = train(_opts(scenes / "small", tmp_path / "b", epochs=2, resume=True))
    assert not _same_rng(straight.rng, resumed.rng)


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_last_good_checkpoint(scenes, tmp_path, capsys, monkeypatch):
    import dataclasses

    from acfd.training import trainer

    class NanAtIteration3(trainer.DetectionLoss):
        """The loss of iteration 3 (counted from 0, the fourth call) made NaN."""

        calls = 0

        def __call__(self, *args, **kwargs):
            parts = super().__call__(*args, **kwargs)
            NanAtIteration3.calls += 1
            return dataclasses.replace(parts, total=parts.total * float("nan")) if NanAtIteration3.calls == 4 else parts

    monkeypatch.setattr(trainer, "DetectionLoss", NanAtIteration3)
    run = tmp_path / "run"
    args = [
        "train",
        "--data",
        str(scenes / "small"),
        "--preset",
        "tiny",
        "--epochs",
        "3",
        "--batch",
        "4",
        "--out",
        str(run),
        "--size",
        SIZE,
        "--workers",
        "0",
        "--no-progress",
    ]
    assert main(args) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "loss is nan at iteration 3 (epoch 2)" in err[0]
    assert str(run / "last.pt") in err[0]
    saved = read_checkpoint(run / "last.pt")
    assert (saved["epoch"], saved["iteration"]) == (1, 2)  # epoch 1 ended at iteration 2; nothing after


def test_user_errors_are_one_line(scenes, tmp_path, capsys):
    base = ["train", "--preset", "tiny", "--out", str(tmp_path / "r"), "--no-progress"]
    assert main(base + ["--data", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip() == f"acfd train: --data {tmp_path / 'missing'}: no such file or folder"
    assert main(base + ["--data", str(scenes / "small"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert main(base + ["--data", str(scenes / "small"), "--batch", "0"]) == 2
    assert "--batch 0: must be at least 1" in capsys.readouterr().err
    assert main(base + ["--data", str(scenes / "small"), "--preset", "nope"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err
    assert main(base + ["--data", str(scenes / "small"), "--batch", "64"]) == 2
    assert "lower --batch" in capsys.readouterr().err.strip().splitlines()[-1]
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "last.pt").write_bytes(b"not a checkpoint")
    assert main(base + ["--data", str(scenes / "small")]) == 2
    assert "exists: add --resume" in capsys.readouterr().err
    assert main(base + ["--data", str(scenes / "small"), "--resume", "--batch", "4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a readable checkpoint" in err[0] and str(tmp_path / "r" / "last.pt") in err[0]
    if not torch.cuda.is_available():
        assert main(base + ["--data", str(scenes / "small"), "--device", "cuda"]) == 2
        assert "no CUDA device" in capsys.readouterr().err


@pytest.mark.parametrize("psi2_norm,psi2_divisor", [("n2", 1.0), ("max_n1_n2", 2.0)])
def test_psi2_normaliser_by_hand(psi2_norm, psi2_divisor):
    import dataclasses
    import math

    from acfd.inference.box_coder import BoxCoder
    from acfd.training.config import TrainConfig
    from acfd.training.loss import DetectionLoss

    # A face at [0, 10]^2; anchors 0 and 1 overlap it (IoU 1 and 9/11: psi1), anchor 2 lies far away
    # but regresses to the face shifted by 0.5 px (IoU 9.5/10.5 > T2: psi2). N1 = 2, N2 = 1.
    anchors = torch.tensor([[0.0, 0, 10, 10], [1, 0, 11, 10], [40, 40, 50, 50]])
    gt = torch.tensor([[[0.0, 0, 10, 10]]])
    deltas = torch.zeros(1, 3, 4)
    deltas[0, 2] = BoxCoder().encode(gt[0, 0], anchors[2]) + torch.tensor([0.5, 0, 0, 0])
    cfg = dataclasses.replace(TrainConfig(), psi2_norm=psi2_norm)
    parts = DetectionLoss(cfg, kernels="torch")(torch.zeros(1, 3), deltas, anchors, gt, torch.tensor([1]))
    assert (parts.n1, parts.n2) == (2, 1)
    # smooth-L1 (beta 1): anchor 1 has target dx = (5 - 6) / (10 * 0.1) = -1 -> 0.5; anchor 2: 0.5^2 / 2
    assert float(parts.reg) == pytest.approx(0.5 / 2 + 0.7 * 0.125 / psi2_divisor, rel=1e-5)
    # MBC focal at logit 0 for a positive: z = -0.2, p = sigmoid(z), 0.25 (1 - p)^2 (-log p); negatives: none
    p = 1.0 / (1.0 + math.exp(0.2))
    focal = 0.25 * (1 - p) ** 2 * -math.log(p)
    assert float(parts.cls) == pytest.approx(2 * focal / 2 + 0.7 * focal / psi2_divisor, rel=1e-5)


def test_init_starts_from_the_default_weights_with_a_fresh_schedule(scenes, tmp_path, capsys):
    from acfd.weights import DEFAULT_WEIGHTS

    # one iteration at the warm-up's first LR (1e-6): the weights barely leave the default model's
    run = train(
        _opts(
            scenes / "small",
            tmp_path / "ft",
            preset="mid",
            init=str(DEFAULT_WEIGHTS),
            epochs=1,
            max_iters=1,
            warmup_iters=5,
        )
    )
    assert run.status == "done"
    default = read_checkpoint(DEFAULT_WEIGHTS)["model"]
    tuned = read_checkpoint(tmp_path / "ft" / "last.pt")
    assert (tuned["epoch"], tuned["iteration"]) == (1, 1)  # a new run, not the default model's epoch count
    for name, value in default.items():
        if name.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue  # train-mode BN updates its statistics whatever the LR
        assert torch.allclose(tuned["model"][name], value, atol=1e-4), name
    # a new schedule: the first LR is the warm-up's start
    first = _rows(tmp_path / "ft" / "metrics.csv", "iter")[0]
    assert float(first["lr"]) == pytest.approx(1e-6, rel=1e-3)

    base = ["train", "--data", str(scenes / "small"), "--preset", "mid", "--no-progress", "--batch", "4"]
    assert main(base + ["--out", str(tmp_path / "a51"), "--preset", "acfd51", "--init", str(DEFAULT_WEIGHTS)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--init" in err[0] and "do not fit preset 'acfd51'" in err[0]
    assert main(base + ["--out", str(tmp_path / "x"), "--init", str(scenes / "small" / "annotations.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("acfd train: --init") and "not a readable checkpoint" in err
    assert main(base + ["--out", str(tmp_path / "ft"), "--init", str(DEFAULT_WEIGHTS), "--resume"]) == 2
    assert "--init and --resume exclude each other" in capsys.readouterr().err


def test_a_run_at_another_size_scales_its_test_scales():
    from acfd.training.trainer import resolve_preset

    paper = resolve_preset(TrainOptions(data="d", out="o", preset="tiny"))
    assert paper.inference.single_scale == (640, 640)
    assert paper.inference.test_scales == ((480, 645), (640, 860), (800, 1075))
    small = resolve_preset(TrainOptions(data="d", out="o", preset="tiny", size=384))
    assert small.train.input_size == 384
    assert small.inference.single_scale == (384, 384)
    assert small.inference.test_scales == ((288, 387), (384, 516), (480, 645))  # x 0.6, rounded half up
    assert small.inference.nms_iou == paper.inference.nms_iou


def test_every_option_has_its_flag_and_comes_back_from_it():
    import argparse
    import dataclasses

    from acfd.training.train_cli import add_arguments, options_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    flags = {a.dest for a in parser._actions} - {"help", "threads"}
    api_only = {f.name for f in dataclasses.fields(TrainOptions) if f.metadata["cli"] == {}}
    assert (
        flags
        == {f.name for f in dataclasses.fields(TrainOptions)} - api_only
        == set(vars(parser.parse_args(["--data", "d", "--out", "o"]))) - {"threads"}
    )
    opts = options_from_args(
        parser.parse_args(
            [
                "--data",
                "d",
                "--out",
                "o",
                "--device",
                "cpu",
                "--workers",
                "0",
                "--lr-milestones",
                "2",
                "3",
                "--no-progress",
                "--resume",
                "--max-minutes",
                "1.5",
            ]
        )
    )
    assert opts == TrainOptions(
        data=("d",), out="o", lr_milestones=(2, 3), progress=False, resume=True, max_minutes=1.5
    )
    defaults = options_from_args(parser.parse_args(["--data", "d", "--out", "o", "--device", "cpu", "--workers", "0"]))
    assert defaults == TrainOptions(data=("d",), out="o")  # the flags' defaults are the API's, but where said


def test_training_hours_add_up_the_pieces_of_a_resumed_run():
    from acfd.training.curves import training_hours

    def row(kind, iteration, elapsed):
        return {"kind": kind, "iteration": str(iteration), "elapsed_s": str(elapsed)}

    rows = [
        row("iter", 10, 30), row("epoch", 20, 3600),  # piece 1: one epoch in an hour
        row("iter", 30, 20), row("epoch", 40, 1800), row("epoch", 60, 9000),  # piece 2 (longer than piece 1)
        row("iter", 70, 5), row("epoch", 80, 720),  # piece 3
    ]  # fmt: skip
    points, pieces = training_hours(rows)
    assert pieces == 3
    assert points == [(20, 1.0), (40, 1.5), (60, 3.5), (80, 3.7)]
    assert training_hours([row("iter", 5, 10)]) == ([], 1)
