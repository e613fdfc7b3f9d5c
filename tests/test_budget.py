"""Wall-clock budget of acfd train --max-minutes (acfd.training.budget): planning and the deadline,
with made-up step times; the whole recipe runs in tests/test_train_gpu.py."""

import pytest

from acfd.training.budget import CALIBRATION_ITERS, SKIPPED_ITERS, WallClockBudget
from acfd.training.trainer import TrainOptions, train


def _calibrated(minutes=10.0, step_s=1.0, batch=16):
    budget = WallClockBudget(minutes, started=0.0, batch=batch)
    for i in range(SKIPPED_ITERS + CALIBRATION_ITERS):
        budget.observe_step(30.0 if i < SKIPPED_ITERS else step_s)  # the first steps compile: not counted
    assert budget.calibrated() and budget.step_s == step_s
    return budget


def test_plan_fits_the_epochs_in_what_is_left():
    budget = _calibrated(minutes=10.0, step_s=1.0)
    # 600 s less the 5% margin = 570 s, 100 s used: 470 s of 50-step epochs, no validation -> 9 epochs
    assert budget.plan_epochs(300, 50, iters_done=13, eval_every=1, val_images=0, now=100.0) == 9
    assert budget.planned
    # validations: 160 images x 0.5 x 1 s / 16 = 5 s each; (9 epochs, eval every 1): 450 + 45 > 470 -> 8
    assert _calibrated().plan_epochs(300, 50, 13, eval_every=1, val_images=160, now=100.0) == 8
    # only the last one (eval every 1000): 9 epochs, 450 + 5 s
    assert _calibrated().plan_epochs(300, 50, 13, eval_every=1000, val_images=160, now=100.0) == 9
    # never more than the preset's, never less than the epoch under way
    assert _calibrated(minutes=1e4).plan_epochs(30, 50, 13, 1, 0, now=100.0) == 30
    assert _calibrated(minutes=1.0).plan_epochs(300, 50, 13, 1, 0, now=100.0) == 1


def test_a_step_starts_only_when_it_and_the_closing_validation_fit():
    budget = _calibrated(minutes=1.0, step_s=2.0)
    assert budget.step_fits(val_images=0, now=57.0)
    assert not budget.step_fits(val_images=0, now=58.5)
    assert not budget.step_fits(val_images=16 * 4, now=55.0)  # 4 s of validation estimated
    budget.validation_s = 0.5  # measured: replaces the estimate
    assert budget.step_fits(val_images=16 * 4, now=57.0)


def test_max_minutes_and_resume_exclude_each_other(tmp_path):
    from acfd.training.trainer import TrainError

    (tmp_path / "last.pt").write_bytes(b"x")
    with pytest.raises(TrainError, match="--max-minutes plans a whole run"):
        train(TrainOptions(data=str(tmp_path), out=str(tmp_path), resume=True, max_minutes=1.0))
