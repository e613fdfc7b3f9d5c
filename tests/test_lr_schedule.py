import pytest
import torch

from acfd.training.lr_schedule import (
    LrSchedule,
    StepScheduler,
    build_schedule,
    scale_milestones,
    scaled_lr,
    warmup_length,
)


def test_paper_schedule_values():
    # paper: 1e-6 -> 0.04 over 1000 iterations at batch 64, /10 at epochs 200, 250, 280
    s = build_schedule(0.04, 64, 64, 1000, 1e-6, (200, 250, 280), iters_per_epoch=700, total_iters=300 * 700)
    assert s.base_lr == 0.04
    assert s.warmup_iters == 1000
    assert s.milestones == (140_000, 175_000, 196_000)
    assert s.lr_at(0) == pytest.approx(1e-6)
    assert s.lr_at(500) == pytest.approx(1e-6 + (0.04 - 1e-6) * 0.5)
    assert s.lr_at(999) == pytest.approx(1e-6 + (0.04 - 1e-6) * 0.999)
    assert s.lr_at(1000) == pytest.approx(0.04)
    assert s.lr_at(139_999) == pytest.approx(0.04)
    assert s.lr_at(140_000) == pytest.approx(0.004)
    assert s.lr_at(175_000) == pytest.approx(0.0004)
    assert s.lr_at(196_000) == pytest.approx(0.00004)


def test_linear_batch_scaling():
    assert scaled_lr(0.04, 64, 16) == pytest.approx(0.01)
    assert scaled_lr(0.04, 64, 4) == pytest.approx(0.0025)
    assert scaled_lr(0.04, 64, 128) == pytest.approx(0.08)


def test_milestones_scale_with_epochs_rounding_half_up():
    assert scale_milestones((200, 250, 280), 300, 300) == (200, 250, 280)
    assert scale_milestones((200, 250, 280), 300, 200) == (133, 167, 187)
    assert scale_milestones((200, 250, 280), 300, 30) == (20, 25, 28)
    assert scale_milestones((200, 250, 280), 300, 3) == (2, 3, 3)  # 2.5 rounds up to 3
    assert scale_milestones((200, 250, 280), 300, 1) == (1, 1, 1)


def test_warmup_shortened_for_short_runs():
    assert warmup_length(1000, 300 * 700) == 1000
    assert warmup_length(1000, 5000) == 1000
    assert warmup_length(1000, 4000) == 800
    assert warmup_length(1000, 10) == 2
    assert warmup_length(1000, 3) == 1


def test_step_scheduler_sets_lr_and_resumes():
    sched = LrSchedule(base_lr=0.1, warmup_iters=4, warmup_start_lr=0.0, milestones=(6,))
    expected = [0.0, 0.025, 0.05, 0.075, 0.1, 0.1, 0.01, 0.01]
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [param]}, {"params": [], "weight_decay": 0.0}], lr=1.0)
    scheduler = StepScheduler(opt, sched)
    seen = []
    for _ in range(len(expected)):
        seen.append(opt.param_groups[0]["lr"])
        assert opt.param_groups[1]["lr"] == opt.param_groups[0]["lr"]
        scheduler.step()
    assert seen == pytest.approx(expected)
    state = scheduler.state_dict()
    opt2 = torch.optim.SGD([param], lr=1.0)
    resumed = StepScheduler(opt2, sched)
    resumed.load_state_dict({"iteration": 6})
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.01)
    assert state == {"iteration": len(expected)}


def test_milestone_inside_warmup_still_decays():
    sched = LrSchedule(base_lr=1.0, warmup_iters=10, warmup_start_lr=0.0, milestones=(0,))
    assert sched.lr_at(5) == pytest.approx(0.05)
    assert sched.lr_at(10) == pytest.approx(0.1)
