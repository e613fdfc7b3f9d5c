"""Learning-rate schedule of paper section 4.1: linear warm-up, then step decay ÷10 at milestones.

The schedule is a pure function of the iteration number (``LrSchedule.lr_at``); ``StepScheduler``
applies it to an optimizer once per iteration and checkpoints as a single integer, so a resumed
run sets exactly the learning rates an uninterrupted one would.

Rules that adapt the paper's numbers (0.04 at batch 64, 1,000 warm-up iterations, milestones
200/250/280 of 300 epochs) to other runs:

- **batch**: ``base_lr * batch / base_batch`` (linear scaling; ``batch`` is the global batch,
  all ranks together).
- **epochs**: a preset's milestones are scaled by ``epochs / preset_epochs`` and rounded half up
  (``30`` epochs -> ``20/25/28``). Explicit milestones are used as given.
- **short runs**: warm-up lasts ``min(warmup_iters, max(1, total_iters // 5))`` iterations, so a run
  shorter than 5,000 iterations spends at most a fifth of its length warming up.
- milestones are epoch boundaries: milestone ``e`` divides the LR from the first iteration of epoch
  ``e`` (0-based), i.e. iteration ``e * iters_per_epoch``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

WARMUP_MAX_FRACTION = 5  # warm-up takes at most 1/5 of a short run


@dataclass(frozen=True)
class LrSchedule:
    """Learning rate as a function of the (0-based) global iteration."""

    base_lr: float
    warmup_iters: int
    warmup_start_lr: float
    milestones: tuple[int, ...]  # in iterations, ascending
    gamma: float = 0.1

    def lr_at(self, iteration: int) -> float:
        decayed = self.base_lr * self.gamma ** sum(1 for m in self.milestones if iteration >= m)
        if iteration >= self.warmup_iters:
            return decayed
        frac = iteration / self.warmup_iters
        return self.warmup_start_lr + (decayed - self.warmup_start_lr) * frac


def scaled_lr(base_lr: float, base_batch: int, batch: int) -> float:
    """Linear scaling rule: ``base_lr`` is for ``base_batch`` images per step."""
    return base_lr * batch / base_batch


def scale_milestones(milestones: Sequence[int], preset_epochs: int, epochs: int) -> tuple[int, ...]:
    """Preset milestones (in epochs of a ``preset_epochs`` run) moved proportionally to ``epochs``."""
    if epochs == preset_epochs:
        return tuple(int(m) for m in milestones)
    return tuple(int(math.floor(m * epochs / preset_epochs + 0.5)) for m in milestones)


def warmup_length(warmup_iters: int, total_iters: int) -> int:
    """Warm-up iterations for a run of ``total_iters`` (see the module docstring)."""
    return max(1, min(warmup_iters, total_iters // WARMUP_MAX_FRACTION))


def build_schedule(
    base_lr: float,
    base_batch: int,
    batch: int,
    warmup_iters: int,
    warmup_start_lr: float,
    milestone_epochs: Sequence[int],
    iters_per_epoch: int,
    total_iters: int,
) -> LrSchedule:
    """The schedule of one run, from preset values and the run's batch and length."""
    return LrSchedule(
        base_lr=scaled_lr(base_lr, base_batch, batch),
        warmup_iters=warmup_length(warmup_iters, total_iters),
        warmup_start_lr=warmup_start_lr,
        milestones=tuple(sorted(int(e) * iters_per_epoch for e in milestone_epochs)),
    )


class StepScheduler:
    """Sets every param group's LR to ``schedule.lr_at(iteration)``; call ``step()`` after each update."""

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: LrSchedule, iteration: int = 0):
        self.optimizer = optimizer
        self.schedule = schedule
        self.iteration = iteration
        self._apply()

    @property
    def lr(self) -> float:
        return self.schedule.lr_at(self.iteration)

    def step(self) -> None:
        self.iteration += 1
        self._apply()

    def state_dict(self) -> dict:
        return {"iteration": self.iteration}

    def load_state_dict(self, state: dict) -> None:
        self.iteration = int(state["iteration"])
        self._apply()

    def _apply(self) -> None:
        lr = self.lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr
