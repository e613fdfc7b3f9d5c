"""Weight EMA: an exponential moving average of the model's weights, the weights that are validated,
saved as ``best.pt`` and exported.

``ModelEMA(model, decay, tau)`` keeps a copy of ``model`` (parameters and floating-point buffers,
BatchNorm running statistics included; integer buffers are copied). ``update(model)`` after each
optimizer step moves it towards the model with the ramped decay

    d(k) = decay * (1 - exp(-k / tau))        (k = updates so far)

so the average follows the fast-changing early weights closely and settles to ``decay`` (an average
over about ``1 / (1 - decay)`` steps) once ``k >> tau``. ``decay = 0`` turns it off: the average is
then the model itself. ``state_dict`` / ``load_state_dict`` carry the averaged weights and ``k``, so
a resumed run continues the same average.
"""

from __future__ import annotations

import copy
import math

import torch


class ModelEMA:
    def __init__(self, model: torch.nn.Module, decay: float, tau: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"train.ema_decay must be in [0, 1), got {decay}")
        if tau <= 0:
            raise ValueError(f"train.ema_tau must be positive, got {tau}")
        self.decay, self.tau = float(decay), float(tau)
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        return self.decay * (1.0 - math.exp(-self.updates / self.tau))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = self.current_decay()  # 0 when decay is 0: the average is the model
        own = self.module.state_dict()
        for name, value in model.state_dict().items():
            target = own[name]
            if target.is_floating_point():
                target.mul_(d).add_(value.detach().to(target.dtype), alpha=1.0 - d)
            else:
                target.copy_(value)

    def state_dict(self) -> dict:
        return {"model": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["model"])
        self.updates = int(state["updates"])
