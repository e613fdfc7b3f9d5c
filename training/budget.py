"""A wall-clock budget for one training run (``acfd train --max-minutes M``).

The run measures its own speed, then plans the epochs that fit; the LR schedule is the preset's,
compressed to those epochs; and the run stops cleanly, validated and checkpointed, at the deadline.

1. Calibration: the first ``CALIBRATION_ITERS`` steps (after ``SKIPPED_ITERS`` that include
   compilation and allocator warm-up) are timed; their median is the seconds per step.
2. Plan (once, right after calibration): the largest number of epochs ``E`` (at most the
   preset's) with ``E * iters_per_epoch * step_s + validations(E) * validation_s`` within what
   is left of the budget less ``MARGIN`` (5%). ``validation_s`` is estimated from the step time
   (a one-scale forward of each validation image costs at most half a training step's time per
   image) until a validation has run, then measured. The milestones are the preset's scaled to
   ``E`` (as ``--epochs E`` would); warm-up keeps its length, at most a fifth of the new run.
3. Deadline: a step does not start when ``now + step_s + validation_s`` would pass the budget; the
   epoch ends there, is validated and saved as ``last.pt`` (and ``best.pt``), and the run ends
   with status ``"done"`` and says that the budget stopped it.

A resumed run continues its saved plan (``budget_plan`` in the checkpoint) without a new budget.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field

CALIBRATION_ITERS = 10
SKIPPED_ITERS = 3
MARGIN = 0.05
VALIDATION_COST = 0.5  # a validation image costs at most this fraction of a training image's step time


@dataclass
class WallClockBudget:
    minutes: float
    started: float = field(default_factory=time.time)
    batch: int = 16
    step_times: list[float] = field(default_factory=list)
    validation_s: float | None = None  # measured once a validation has run
    planned: bool = False

    @property
    def deadline(self) -> float:
        return self.started + 60.0 * self.minutes

    @property
    def step_s(self) -> float | None:
        usable = self.step_times[SKIPPED_ITERS:]
        return statistics.median(usable) if usable else None

    def observe_step(self, seconds: float) -> None:
        if len(self.step_times) < SKIPPED_ITERS + CALIBRATION_ITERS:
            self.step_times.append(seconds)

    def calibrated(self) -> bool:
        return len(self.step_times) >= SKIPPED_ITERS + CALIBRATION_ITERS

    def validation_estimate(self, val_images: int) -> float:
        if self.validation_s is not None:
            return self.validation_s
        if not val_images or self.step_s is None:
            return 0.0
        return val_images * VALIDATION_COST * self.step_s / self.batch

    def plan_epochs(
        self,
        max_epochs: int,
        iters_per_epoch: int,
        iters_done: int,
        eval_every: int,
        val_images: int,
        now: float | None = None,
    ) -> int:
        """Epochs of the whole run (done ones included) that fit in the rest of the budget."""
        now = time.time() if now is None else now
        left = self.deadline - now - MARGIN * 60.0 * self.minutes
        step_s, val_s = self.step_s or 0.0, self.validation_estimate(val_images)
        best = max(1, math.ceil(iters_done / iters_per_epoch))
        for epochs in range(best, max_epochs + 1):
            steps = epochs * iters_per_epoch - iters_done
            validations = (
                len({e for e in range(1, epochs + 1) if e % eval_every == 0 or e == epochs}) if val_images else 0
            )
            if steps * step_s + validations * val_s > left:
                break
            best = epochs
        self.planned = True
        return best

    def step_fits(self, val_images: int, now: float | None = None) -> bool:
        """Whether one more step and the closing validation end before the deadline."""
        now = time.time() if now is None else now
        return now + (self.step_s or 0.0) + self.validation_estimate(val_images) < self.deadline
