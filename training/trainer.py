"""The training loop: epochs of SGD on the DAM + MBC loss, validation, checkpoints, NaN stop.

``train(opts) -> TrainResult`` runs one whole training (or continues one with ``opts.resume``). It
is what ``acfd train`` calls, once per process under ``torchrun``. Its steps, in order: ``_prepare``
(checks, preset, data, model, optimizer), ``_resume``, ``_start_logs``, then per epoch
``_Loop.run_epoch`` and ``_end_epoch`` (validation, checkpoint state), and ``_stopped`` or
``_finish``. (Over 500 lines on purpose: every step of one run, read top to bottom; the options are
in ``acfd.training.options``.)

- Optimizer: SGD, momentum 0.9, weight decay 5e-4 on convolution weights only; BatchNorm weights
  and all biases get no decay (they are scale/offset parameters that decay would pull to zero
  without regularising capacity; this is the usual choice for detectors trained from scratch).
- LR per iteration from ``acfd.training.lr_schedule`` (warm-up, ÷10 at milestone epochs).
- ``opts.batch`` is the global batch: each of N ranks loads ``batch / N`` images.
- Data order and augmentation are functions of (seed, epoch, index) only, and checkpoints are taken
  at epoch ends with every RNG state, so a run resumed from ``last.pt`` ends with exactly the
  weights of an uninterrupted one (CPU, workers 0 or more; GPU kernels may be non-deterministic).
- Precision (``acfd.training.precision``): the forward pass under bf16/fp16 autocast or fp32, the
  model and its inputs channels-last; weights, optimizer, matching and losses float32.
- Weight EMA (``acfd.training.ema``): validation, ``best.pt`` and export use the averaged weights.
  Every checkpoint's ``model`` is the EMA (what to use); ``train_model`` holds the raw weights and
  ``ema_updates`` the average's step count, for resuming.
- ``opts.max_minutes``: a wall-clock budget (``acfd.training.budget``): after a few timed steps the
  run plans the epochs that fit, compresses the schedule to them, and stops cleanly (validated,
  checkpointed) at the deadline.
- Checkpoints (rank 0, atomic): ``last.pt`` every epoch, ``best.pt`` when the validation mAP@0.5
  improves. A non-finite loss (on any rank) stops the run before the step is applied and before
  anything is saved, so ``last.pt`` stays the last good state.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader
from tqdm import tqdm

from acfd.training import distributed as D
from acfd.training.budget import WallClockBudget
from acfd.training.data.dataset import batch_on_device
from acfd.training.checkpoint import (
    CheckpointError,
    capture_rng_state,
    read_checkpoint,
    read_training_state,
    restore_rng_state,
    save_checkpoint,
)
from acfd.training.config import Preset, train_sizes
from acfd.training.curves import MetricsWriter, plot_curves
from acfd.training.ema import ModelEMA
from acfd.training.loss import DetectionLoss
from acfd.training.lr_schedule import StepScheduler, build_schedule, scale_milestones
from acfd.training.options import TrainError, TrainOptions, TrainResult, resolve_preset  # noqa: F401 (the API)
from acfd.training.precision import PrecisionError, resolve_precision


def _load_init_weights(model: torch.nn.Module, path: str, preset_name: str) -> None:
    """``--init``: the model weights of a checkpoint of the same preset; nothing else of its run."""
    try:
        payload = read_checkpoint(path)
    except CheckpointError as err:
        raise TrainError(f"--init: {err}") from err
    if "model" not in payload:
        raise TrainError(f"--init {path}: no model weights in this checkpoint")
    saved = payload.get("preset", {})
    saved_name = saved.get("name") if isinstance(saved, dict) else None
    try:
        model.load_state_dict(payload["model"])
    except (RuntimeError, ValueError) as err:
        raise TrainError(
            f"--init {path}: weights of preset {saved_name!r} do not fit preset {preset_name!r} "
            f"({str(err).splitlines()[0]})"
        ) from err


def make_optimizer(model: torch.nn.Module, lr: float, momentum: float, weight_decay: float) -> torch.optim.SGD:
    """SGD with weight decay on conv weights only (1-D parameters: BN weights and biases, no decay)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=lr, momentum=momentum)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(opts: TrainOptions) -> TrainResult:
    """Prepare (checks, preset, data, model, optimizer), resume, then epochs each ending in a
    validation and a checkpoint; the steps below, in that order."""
    budget = WallClockBudget(opts.max_minutes, batch=opts.batch) if opts.max_minutes else None
    device_type = "cuda" if opts.device.startswith("cuda") else opts.device
    if device_type == "cuda" and not torch.cuda.is_available():
        raise TrainError("--device cuda: no CUDA device is available (use --device cpu)")
    info = D.init_from_env(device_type)
    try:
        run = _prepare(opts, info, D.device_for(info, device_type), budget)
        if run.payload is not None:
            _resume(run)
        net = D.wrap_model(run.model, info, run.device, opts.sync_bn)
        loss_fn = DetectionLoss(run.preset.train, kernels=opts.kernels)
        _start_logs(run)
        loop = _Loop(
            opts,
            run.preset,
            info,
            run.device,
            net,
            run.model,
            loss_fn,
            run.optimizer,
            run.scheduler,
            run.scaler,
            run.metrics,
            run.tb,
            run.precision,
            run.ema,
            budget,
            run.replan if budget else None,
            run.val_images,
        )
        run.loop = loop
        epoch = run.start_epoch
        started = time.time()
        paused = False
        while epoch < run.preset.train.epochs and run.iteration < run.total_iters:
            if paused:
                return _finish(run, epoch, started, paused=True)
            epoch_started = time.time()
            run.sampler.set_epoch(epoch)
            run.dataset.set_epoch(epoch)
            stopped, run.iteration, epoch_loss = loop.run_epoch(
                run.loader, epoch, run.iteration, run.total_iters, run.iters_per_epoch, started
            )
            if stopped is not None:
                return _stopped(run, epoch, stopped)
            epoch += 1
            _end_epoch(run, epoch, epoch_loss, started)
            if opts.on_epoch_end is not None:
                opts.on_epoch_end(epoch)
            if loop.out_of_time:
                break
            if opts.pause_after is not None:  # would the next epoch, as long as this one, end past the limit?
                now = time.time()
                paused = now + (now - epoch_started) > started + 60 * opts.pause_after
        return _finish(run, epoch, started)
    finally:
        D.shutdown(info)


@dataclass
class _Run:
    """What the steps of ``train`` share; ``preset`` and ``total_iters`` change when a budget replans."""

    opts: TrainOptions
    info: D.DistInfo
    device: torch.device
    budget: WallClockBudget | None
    out: Path
    preset: Preset
    payload: dict | None  # the checkpoint resumed from
    precision: object
    val_sets: list  # (source name, DetectionSet) per hold-out
    model: torch.nn.Module
    ema: ModelEMA
    loader: DataLoader
    sampler: object
    dataset: object
    iters_per_epoch: int
    total_iters: int
    optimizer: torch.optim.Optimizer
    scheduler: StepScheduler
    scaler: torch.amp.GradScaler
    start_epoch: int = 0
    iteration: int = 0
    best_ap: float | None = None
    last_ap: float | None = None
    budget_plan: dict | None = None
    metrics: MetricsWriter | None = None
    tb: object = None
    loop: "_Loop | None" = None

    @property
    def last_path(self) -> Path:
        return self.out / "last.pt"

    @property
    def val_images(self) -> int:
        return sum(len(v.records) for _, v in self.val_sets)

    def replan(self, done: int) -> int:
        """Compress the run to the epochs that fit the budget (once, after calibration)."""
        opts, cfg = self.opts, self.preset.train
        epochs = self.budget.plan_epochs(cfg.epochs, self.iters_per_epoch, done, opts.eval_every, self.val_images)
        if epochs < cfg.epochs:
            milestones = scale_milestones(cfg.lr_milestones, cfg.epochs, epochs)
            self.preset = _with_plan(self.preset, epochs, milestones)
            cfg = self.preset.train
            self.total_iters = min(self.total_iters, epochs * self.iters_per_epoch)
            self.scheduler.schedule = build_schedule(
                cfg.base_lr,
                cfg.base_batch,
                opts.batch,
                cfg.warmup_iters,
                cfg.warmup_start_lr,
                cfg.lr_milestones,
                self.iters_per_epoch,
                self.total_iters,
            )
            if self.dataset.mosaic_epochs is not None:
                self.dataset.mosaic_epochs = cfg.epochs - cfg.mosaic_off_epochs
            self.budget_plan = {"epochs": cfg.epochs, "milestones": list(cfg.lr_milestones)}
            self.loop.preset = self.preset
        if self.info.is_main:
            print(
                f"acfd train: --max-minutes {opts.max_minutes:g}: {self.budget.step_s:.3f} s per step, "
                f"{cfg.epochs} epochs planned ({self.total_iters} iterations), LR /10 at epochs "
                f"{' '.join(map(str, cfg.lr_milestones)) or 'none'}",
                file=sys.stderr,
            )
            _write_config(
                self.out,
                opts,
                self.preset,
                self.scheduler.schedule,
                self.iters_per_epoch,
                self.total_iters,
                self.info,
                self.precision.name,
            )
        return self.total_iters


def _prepare(opts: TrainOptions, info: D.DistInfo, device: torch.device, budget: WallClockBudget | None) -> _Run:
    """Checks, the preset (a resumed budget run's plan written in), data, model, EMA, optimizer and schedule."""
    from acfd.training.model import build_model

    out = Path(opts.out)
    preset = resolve_preset(opts)
    if opts.batch < 1 or opts.batch % info.world_size:
        raise TrainError(f"--batch {opts.batch} must be a positive multiple of the {info.world_size} processes")
    if opts.sync_bn and info.enabled and device.type != "cuda":
        raise TrainError("--sync-bn needs CUDA devices (torch's SyncBatchNorm does not run on CPU)")
    if opts.init and opts.resume:
        raise TrainError("--init and --resume exclude each other: --resume already restores the weights")
    if budget and opts.resume:
        raise TrainError("--max-minutes plans a whole run; to continue one, --resume without it (its plan is kept)")
    last_path = out / "last.pt"
    if opts.resume and not last_path.is_file():
        raise TrainError(f"--resume: {last_path} does not exist (nothing to resume)")
    if not opts.resume and last_path.is_file():
        raise TrainError(f"{last_path} exists: add --resume to continue that run, or choose another --out")
    payload = None
    if opts.resume:
        try:
            payload = read_training_state(last_path, preset.name)
        except CheckpointError as err:
            raise TrainError(f"--resume: {err}") from err
        if payload.get("budget_plan"):  # a --max-minutes run: continue the plan it made
            preset = _with_plan(preset, **payload["budget_plan"])
    cfg = preset.train

    try:
        precision = resolve_precision(opts.precision, device.type)
    except PrecisionError as err:
        raise TrainError(str(err)) from err
    data = _load_sets(opts, info)
    seed_everything(opts.seed)
    model = build_model(preset).to(device)
    if opts.init:
        _load_init_weights(model, opts.init, preset.name)
    model = model.to(memory_format=torch.channels_last)
    ema = ModelEMA(model, cfg.ema_decay, cfg.ema_tau)
    loader, sampler, dataset = _train_loader(data, opts, preset, info, device)
    iters_per_epoch = len(loader)
    if iters_per_epoch == 0:
        raise TrainError(
            f"{' + '.join(_data_names(opts))}: {len(sampler.sampler)} training samples per epoch give no full "
            f"batch of {opts.batch} ({opts.batch // info.world_size} per process); lower --batch"
        )
    total_iters = cfg.epochs * iters_per_epoch
    if opts.max_iters is not None:
        total_iters = min(total_iters, opts.max_iters)
    schedule = build_schedule(
        cfg.base_lr,
        cfg.base_batch,
        opts.batch,
        cfg.warmup_iters,
        cfg.warmup_start_lr,
        cfg.lr_milestones,
        iters_per_epoch,
        total_iters,
    )
    optimizer = make_optimizer(model, schedule.base_lr, cfg.momentum, cfg.weight_decay)
    return _Run(
        opts,
        info,
        device,
        budget,
        out,
        preset,
        payload,
        precision,
        data.val_sets(),
        model,
        ema,
        loader,
        sampler,
        dataset,
        iters_per_epoch,
        total_iters,
        optimizer,
        StepScheduler(optimizer, schedule),
        torch.amp.GradScaler(device.type, enabled=precision.grad_scaling),
        budget_plan=payload.get("budget_plan") if payload is not None else None,
    )


def _resume(run: _Run) -> None:
    """Weights, EMA, optimizer, schedule, grad scaler, RNG states and counters from ``last.pt``."""
    payload = run.payload
    try:
        run.model.load_state_dict(payload["train_model"])
        run.ema.load_state_dict({"model": payload["model"], "updates": payload["ema_updates"]})
        run.optimizer.load_state_dict(payload["optimizer"])
    except (RuntimeError, ValueError, KeyError) as err:
        raise TrainError(f"--resume: {run.last_path} does not fit this run ({str(err).splitlines()[0]})") from err
    run.scheduler.load_state_dict(payload["scheduler"])
    run.scaler.load_state_dict(payload["scaler"])
    restore_rng_state(payload["rng"])
    run.start_epoch, run.iteration, run.best_ap = payload["epoch"], payload["iteration"], payload.get("best_ap")


def _start_logs(run: _Run) -> None:
    """Rank 0: the run folder, ``command.txt``, ``config.yaml``, ``metrics.csv`` and TensorBoard."""
    if not run.info.is_main:
        return
    opts = run.opts
    run.out.mkdir(parents=True, exist_ok=True)
    _write_run_files(
        run.out,
        opts,
        run.preset,
        run.scheduler.schedule,
        run.iters_per_epoch,
        run.total_iters,
        run.info,
        run.precision.name,
    )
    extra = tuple(f"val_ap_{name}" for name, _ in run.val_sets) if len(run.val_sets) > 1 else ()
    run.metrics = MetricsWriter(
        run.out / "metrics.csv", keep_until_iteration=run.iteration if opts.resume else None, extra=extra
    )
    if run.precision.note:
        print(f"acfd train: {run.precision.note}", file=sys.stderr)
    run.tb = _tensorboard(run.out)


def _end_epoch(run: _Run, epoch: int, epoch_loss: float, started: float) -> None:
    """After epoch ``epoch`` (counted from 1): BN statistics averaged over ranks, validation when due,
    the epoch's metrics row and the checkpoint state (``last.pt``, ``best.pt`` when it improved)."""
    opts, info, ema = run.opts, run.info, run.ema
    D.average_buffers(run.model, info)
    D.average_buffers(ema.module, info)  # its BN statistics absorbed each rank's own
    finished = epoch >= run.preset.train.epochs or run.iteration >= run.total_iters or run.loop.out_of_time
    ap, per_source = None, {}
    if run.val_sets and (finished or epoch % max(1, opts.eval_every) == 0):
        tic = time.time()
        if info.is_main:
            ap, per_source = _validate(ema.module, run.val_sets, run.preset, run.device, opts.progress)
        run.last_ap = ap
        if run.budget is not None:
            run.budget.validation_s = time.time() - tic
    if info.is_main:
        run.metrics.write(
            kind="epoch",
            epoch=epoch,
            iteration=run.iteration,
            lr=run.scheduler.lr,
            loss=epoch_loss,
            val_ap=ap,
            elapsed_s=time.time() - started,
            **{f"val_ap_{name}": value for name, value in per_source.items()} if len(run.val_sets) > 1 else {},
        )
        improved = ap is not None and (run.best_ap is None or ap > run.best_ap)
        run.best_ap = ap if improved else run.best_ap
        state = {
            "preset": run.preset.to_dict(),
            "model": _plain(ema.module.state_dict()),
            "train_model": _plain(run.model.state_dict()),
            "ema_updates": ema.updates,
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "scaler": run.scaler.state_dict(),
            "epoch": epoch,
            "iteration": run.iteration,
            "rng": capture_rng_state(),
            "best_ap": run.best_ap,
            "val_ap": ap,
            "val_ap_sources": per_source,
            "seed": opts.seed,
            "batch": opts.batch,
            "budget_plan": run.budget_plan,
        }
        save_checkpoint(run.last_path, state)
        if improved:
            save_checkpoint(run.out / "best.pt", state)
        if run.tb is not None and ap is not None:
            run.tb.add_scalar("val/ap50", ap, run.iteration)
    D.barrier(info)


def _stopped(run: _Run, epoch: int, stopped: tuple[int, float]) -> TrainResult:
    """A non-finite loss in epoch ``epoch + 1``: curves drawn, nothing saved, the last good checkpoint named."""
    out = run.out
    if run.info.is_main:
        plot_curves(out / "metrics.csv", out / "curves.png", title=f"{run.preset.name}: {out.name} (stopped)")
    D.barrier(run.info)
    last = run.last_path
    where = f"last good checkpoint: {last} (epoch {epoch})" if last.is_file() else "no checkpoint was saved yet"
    message = f"loss is {stopped[1]} at iteration {stopped[0]} (epoch {epoch + 1}); training stopped, {where}"
    return TrainResult("nan", epoch, stopped[0], run.best_ap, run.last_ap, message, run.ema.module, capture_rng_state())


def _finish(run: _Run, epoch: int, started: float, paused: bool = False) -> TrainResult:
    """Curves drawn, TensorBoard closed, the one-line summary (``paused``: a ``--pause-after`` piece)."""
    out, opts = run.out, run.opts
    if run.info.is_main:
        plot_curves(out / "metrics.csv", out / "curves.png", title=f"{run.preset.name}: {out.name}")
        if run.tb is not None:
            run.tb.close()
    message = (
        f"trained {epoch} epoch{'' if epoch == 1 else 's'} ({run.iteration} iterations) in "
        f"{time.time() - started:.0f} s; weights: {run.last_path}"
    )
    if run.loop.out_of_time:
        message = f"stopped by --max-minutes {opts.max_minutes:g} in epoch {epoch}: " + message
    if paused:
        message = (
            f"paused by --pause-after {opts.pause_after:g} after epoch {epoch} of {run.preset.train.epochs} "
            f"(continue with --resume): " + message
        )
    if run.best_ap is not None:
        message += f"; best val mAP@0.5 {100 * run.best_ap:.2f}% ({out / 'best.pt'})"
    return TrainResult(
        "done", epoch, run.iteration, run.best_ap, run.last_ap, message, run.ema.module, capture_rng_state()
    )


class _Loop:
    """One epoch of steps; holds what every step needs."""

    def __init__(
        self,
        opts,
        preset,
        info,
        device,
        net,
        model,
        loss_fn,
        optimizer,
        scheduler,
        scaler,
        metrics,
        tb,
        precision,
        ema,
        budget=None,
        replan=None,
        val_images=0,
    ):
        self.opts, self.preset, self.info, self.device = opts, preset, info, device
        self.net, self.model, self.loss_fn = net, model, loss_fn
        self.optimizer, self.scheduler, self.scaler = optimizer, scheduler, scaler
        self.metrics, self.tb = metrics, tb
        self.precision, self.ema = precision, ema
        self.budget, self.replan, self.val_images = budget, replan, val_images
        self.out_of_time = False  # the budget ended the run in the last epoch
        self._anchors: dict[tuple[int, int], torch.Tensor] = {}

    def run_epoch(
        self, loader: DataLoader, epoch: int, iteration: int, total_iters: int, iters_per_epoch: int, started: float
    ):
        """Returns ``(stop, iteration, mean_loss)``; ``stop`` is ``(iteration, value)`` for a non-finite loss."""
        opts, info = self.opts, self.info
        self.net.train()
        steps = min(iters_per_epoch, total_iters - iteration)
        bar = tqdm(
            total=steps,
            desc=f"epoch {epoch + 1}/{self.preset.train.epochs}",
            unit="it",
            disable=not (opts.progress and info.is_main),
            dynamic_ncols=True,
            file=sys.stderr,
        )
        window: list[dict] = []
        epoch_sum, epoch_n = 0.0, 0
        tick = time.time()
        for images, gt_boxes, gt_count, ignore_boxes, ignore_count in loader:
            if iteration >= total_iters:
                break
            if self.budget is not None and not self._step_fits():
                self.out_of_time = True
                break
            images = batch_on_device(images, self.device)
            gt_boxes, gt_count = gt_boxes.to(self.device), gt_count.to(self.device)
            ignore_boxes, ignore_count = ignore_boxes.to(self.device), ignore_count.to(self.device)
            with self.precision.autocast():
                logits, deltas = self.net(images)
            parts = self.loss_fn(
                logits, deltas, self._anchors_for(images), gt_boxes, gt_count, ignore_boxes, ignore_count
            )
            loss = parts.total
            reduced = D.all_reduce_mean(loss, info)
            value = float(reduced)
            if not math.isfinite(value):
                bar.close()
                return (iteration, value), iteration, None
            lr = self.scheduler.lr
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.ema.update(self.model)
            self.scheduler.step()
            iteration += 1
            now = time.time()
            img_s = opts.batch / max(now - tick, 1e-9)
            if self.budget is not None:
                self.budget.observe_step(now - tick)
                if self.replan is not None and self.budget.calibrated() and not self.budget.planned:
                    total_iters = self.replan(iteration)
                    steps = min(steps, epoch_n + 1 + total_iters - iteration)
            tick = now
            window.append(
                {
                    "loss": value,
                    "cls": float(parts.cls),
                    "reg": float(parts.reg),
                    "n1": parts.n1,
                    "n2": parts.n2,
                    "img_s": img_s,
                    "lr": lr,
                }
            )
            epoch_sum, epoch_n = epoch_sum + value, epoch_n + 1
            bar.update(1)
            bar.set_postfix(loss=f"{value:.3f}", lr=f"{lr:.2e}", img_s=f"{img_s:.1f}")
            if len(window) >= opts.log_every or iteration >= total_iters or epoch_n == steps:
                self._log(window, epoch, iteration, started)
                window = []
        bar.close()
        return None, iteration, epoch_sum / max(epoch_n, 1)

    def _step_fits(self) -> bool:
        """Whether the budget has room for one more step (the same answer on every rank)."""
        fits = torch.tensor(float(self.budget.step_fits(self.val_images)), device=self.device)
        return float(D.all_reduce_mean(fits, self.info)) == 1.0

    def _anchors_for(self, images: torch.Tensor) -> torch.Tensor:
        key = (images.shape[-2], images.shape[-1])
        if key not in self._anchors:
            self._anchors[key] = self.model.anchors(key[0], key[1], self.device)
        return self._anchors[key]

    def _log(self, window: list[dict], epoch: int, iteration: int, started: float) -> None:
        if self.metrics is None or not window:
            return
        mean = {k: sum(w[k] for w in window) / len(window) for k in ("loss", "cls", "reg", "n1", "n2", "img_s")}
        self.metrics.write(
            kind="iter",
            epoch=epoch + 1,
            iteration=iteration,
            lr=window[-1]["lr"],
            loss=mean["loss"],
            cls=mean["cls"],
            reg=mean["reg"],
            n1=mean["n1"],
            n2=mean["n2"],
            images_per_s=mean["img_s"],
            elapsed_s=time.time() - started,
        )
        if self.tb is not None:
            for name in ("loss", "cls", "reg"):
                self.tb.add_scalar(f"train/{name}", mean[name], iteration)
            self.tb.add_scalar("train/lr", window[-1]["lr"], iteration)


def _data_names(opts: TrainOptions) -> tuple[str, ...]:
    return (opts.data,) if isinstance(opts.data, str) else tuple(opts.data)


def _load_sets(opts: TrainOptions, info: D.DistInfo):
    """Every source's training and hold-out sets (``acfd.training.data.sources``); one line per source
    whose files had problems (rank 0)."""
    from acfd.training.data.sources import SourceError, load_sources, sources_from_flags

    vals = () if opts.val is None else ((opts.val,) if isinstance(opts.val, str) else tuple(opts.val))
    try:
        sources = sources_from_flags(_data_names(opts), vals, images=opts.images, format=opts.format)
        return load_sources(
            sources, category=opts.category, warn=lambda line: print(f"acfd train: {line}", file=sys.stderr)
        )
    except SourceError as err:
        raise TrainError(str(err)) from err


def _augment_config(preset: Preset, size: int):
    """Augmentation settings whose anchor-scale tiling targets the network's real anchor sides.

    ``AugmentConfig.anchor_sizes`` are read as sides at a 640 input and scaled by ``size / 640``,
    but the network's anchors are ``anchor_scale * stride`` pixels at every input size; pre-scaling
    by ``640 / size`` cancels that (no change at 640), so at ``--size 128`` faces are still tiled
    to 16..512-pixel anchors rather than to 3..102 pixels that no anchor matches.
    """
    from acfd.training.data.augment import AugmentConfig, config_for_size

    sides = tuple(preset.model.anchor_scale * s for s in preset.model.strides)
    return config_for_size(AugmentConfig(size=640, anchor_sizes=sides), size)


def _train_loader(data, opts: TrainOptions, preset: Preset, info: D.DistInfo, device: torch.device):
    """Loader of the trained sources' records: one shuffled pass per epoch over a single unweighted
    source, else ``SourceSampler``'s weighted draw (both a function of seed and epoch only)."""
    from acfd.training.data.dataset import DetectionDataset, MultiScaleBatches, collate_with_ignore
    from acfd.training.data.sources import SourceSampler

    # On a GPU the loader is the bottleneck: send uint8 and normalise there. On a CPU the model is, and
    # the loader workers normalise (the same numbers either way).

    cfg = preset.train
    size = cfg.input_size
    dataset = DetectionDataset(
        data.train_records(),
        train=True,
        size=size,
        seed=opts.seed,
        augment_config=_augment_config(preset, size),
        mosaic_prob=cfg.mosaic_prob,
        mosaic_epochs=cfg.epochs - cfg.mosaic_off_epochs,
        uint8=device.type == "cuda",
    )
    if opts.cache_images:
        held = dataset.preload(progress=opts.progress and info.is_main)
        if info.is_main:
            print(f"acfd train: {len(dataset)} training images decoded into memory ({held / 2**30:.2f} GiB)")
    if data.weighted():
        sizes, weights = data.sizes_and_weights()
        sampler = SourceSampler(sizes, weights, opts.seed, info.rank, info.world_size)
    else:
        sampler = D.train_sampler(dataset, info, opts.seed)
    batches = MultiScaleBatches(sampler, opts.batch // info.world_size, train_sizes(cfg), opts.seed)
    loader = DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=opts.workers,
        collate_fn=collate_with_ignore,
        pin_memory=device.type == "cuda",
        persistent_workers=opts.workers > 0,  # the epoch travels with each item (MultiScaleBatches)
        # The workers' base seed is drawn from this generator, not the global RNG: a resumed run's
        # new loader must not draw where the uninterrupted run's persistent one did not. (Samples
        # depend on (seed, epoch, index) only, never on the workers' seeds.)
        generator=torch.Generator().manual_seed(opts.seed),
    )
    return loader, batches, dataset


def _validate(
    model: torch.nn.Module, val_sets: list, preset: Preset, device: torch.device, progress: bool
) -> tuple[float, dict[str, float]]:
    """mAP@0.5 (single scale) of each hold-out, and their mean: the figure ``best.pt`` follows."""
    from acfd.training.evaluation.evaluate import evaluate
    from acfd.training.model import Predictor

    was_training = model.training
    model.eval()
    per_source = {}
    try:
        with torch.no_grad():
            predictor = Predictor(model).to(device)
            for name, val_set in val_sets:
                result = evaluate(predictor, val_set, multiscale=False, cfg=preset.inference, progress=progress)
                per_source[name] = float(result["ap"])
    finally:
        model.train(was_training)
    finite = [v for v in per_source.values() if math.isfinite(v)]
    return (sum(finite) / len(finite) if finite else float("nan")), per_source


def _plain(state: dict) -> dict:
    """A state dict in the standard (contiguous) layout, so checkpoints do not depend on channels-last."""
    return {k: v.contiguous() for k, v in state.items()}


def _with_plan(preset: Preset, epochs: int, milestones) -> Preset:
    """The preset with a budget plan's epochs and LR milestones written in."""
    return dataclasses.replace(
        preset,
        train=dataclasses.replace(preset.train, epochs=int(epochs), lr_milestones=tuple(int(m) for m in milestones)),
    )


def _write_run_files(
    out: Path,
    opts: TrainOptions,
    preset: Preset,
    schedule,
    iters_per_epoch: int,
    total_iters: int,
    info: D.DistInfo,
    precision: str,
) -> None:
    """``command.txt`` (appended on every start, so resumes show) and the resolved ``config.yaml``."""
    with (out / "command.txt").open("a") as f:
        f.write((opts.command or shlex.join(sys.argv)) + "\n")
    _write_config(out, opts, preset, schedule, iters_per_epoch, total_iters, info, precision)


def _write_config(
    out: Path,
    opts: TrainOptions,
    preset: Preset,
    schedule,
    iters_per_epoch: int,
    total_iters: int,
    info: D.DistInfo,
    precision: str,
) -> None:
    run = {f.name: getattr(opts, f.name) for f in dataclasses.fields(opts) if not f.name.startswith("on_")}
    run.update(
        precision_used=precision,
        train_sizes=list(train_sizes(preset.train)),
        world_size=info.world_size,
        iters_per_epoch=iters_per_epoch,
        total_iters=total_iters,
        lr=schedule.base_lr,
        warmup_iters=schedule.warmup_iters,
        lr_milestone_iters=schedule.milestones,
        weight_decay_on="conv weights only (none on BatchNorm weights and biases)",
    )
    plain = json.loads(json.dumps({"preset": preset.to_dict(), "run": run}))  # tuples -> lists
    (out / "config.yaml").write_text(yaml.safe_dump(plain, sort_keys=False))


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(out / "tensorboard"))
