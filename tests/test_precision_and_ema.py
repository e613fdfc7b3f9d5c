"""``--precision`` resolution (bf16 on a CPU with it, a clean fp32 fallback without) and the weight
EMA (ramped decay, off at 0, exact state round trip)."""

from __future__ import annotations

import math

import pytest
import torch

from acfd.training import precision as P
from acfd.training.config import load_preset
from acfd.training.ema import ModelEMA
from acfd.training.loss import DetectionLoss
from acfd.training.model import build_model


def test_auto_is_bf16_on_a_bf16_cpu_and_fp32_with_a_note_without(monkeypatch):
    monkeypatch.setattr(P, "cpu_has_bf16", lambda: True)
    assert P.resolve_precision("auto", "cpu") == P.Precision("bf16", "cpu")
    monkeypatch.setattr(P, "cpu_has_bf16", lambda: False)
    fallback = P.resolve_precision("auto", "cpu")
    assert fallback.name == "fp32" and "no native bf16" in fallback.note
    assert P.resolve_precision("bf16", "cpu").note  # emulated: said, not refused
    assert P.resolve_precision("fp32", "cpu").autocast_dtype is None


def test_fp16_on_cpu_and_unknown_names_are_errors():
    with pytest.raises(P.PrecisionError, match="fp16 needs a CUDA device"):
        P.resolve_precision("fp16", "cpu")
    with pytest.raises(P.PrecisionError, match="choose one of"):
        P.resolve_precision("half", "cpu")
    assert P.resolve_precision("fp16", "cuda").grad_scaling
    assert not P.resolve_precision("bf16", "cuda").grad_scaling


def test_bf16_forward_float32_loss_and_gradients():
    preset = load_preset("tiny")
    torch.manual_seed(0)
    model = build_model(preset).to(memory_format=torch.channels_last).train()
    images = torch.randn(2, 3, 96, 96).contiguous(memory_format=torch.channels_last)
    gt = torch.tensor([[[10.0, 10.0, 50.0, 60.0]], [[30.0, 20.0, 70.0, 80.0]]])
    with P.Precision("bf16", "cpu").autocast():
        logits, deltas = model(images)
    assert logits.dtype == torch.bfloat16
    loss = DetectionLoss(preset.train, "torch")(logits, deltas, model.anchors(96, 96), gt, torch.tensor([1, 1]))
    assert loss.total.dtype == torch.float32 and math.isfinite(float(loss.total.detach()))
    loss.total.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))


def test_ema_follows_the_ramped_decay_by_hand():
    model = _net()
    ema = ModelEMA(model, decay=0.9, tau=2.0)
    start = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    ema.update(model)
    d1 = 0.9 * (1 - math.exp(-1 / 2))
    torch.testing.assert_close(ema.module[0].weight, d1 * start + (1 - d1) * (start + 1))
    with torch.no_grad():
        model[0].weight.add_(1.0)
    ema.update(model)
    d2 = 0.9 * (1 - math.exp(-2 / 2))
    expect = d2 * (d1 * start + (1 - d1) * (start + 1)) + (1 - d2) * (start + 2)
    torch.testing.assert_close(ema.module[0].weight, expect)
    assert ema.module[1].num_batches_tracked == model[1].num_batches_tracked  # integer buffers copied


def test_ema_off_is_the_model_and_its_state_round_trips():
    model = _net()
    off = ModelEMA(model, decay=0.0, tau=1.0)
    with torch.no_grad():
        model[0].weight.mul_(3.0)
    off.update(model)
    assert torch.equal(off.module[0].weight, model[0].weight)
    on = ModelEMA(model, decay=0.99, tau=5.0)
    for _ in range(3):
        with torch.no_grad():
            model[0].weight.add_(0.5)
        on.update(model)
    copy = ModelEMA(_net(), decay=0.99, tau=5.0)
    copy.load_state_dict(on.state_dict())
    assert copy.updates == 3 and torch.equal(copy.module[0].weight, on.module[0].weight)
    with pytest.raises(ValueError, match="ema_decay"):
        ModelEMA(model, decay=1.0, tau=1.0)
