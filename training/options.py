"""What one training run is asked to do: ``TrainOptions`` (each field's default and meaning, from
which ``acfd train`` makes its flags), what it returns (``TrainResult``), the one-line ``TrainError``,
and ``resolve_preset``: the preset with the run's epochs, milestones and input size written in.
``acfd.training.trainer`` runs them."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from acfd.kernels.dispatch import IMPLS
from acfd.training.config import Preset, inference_for_size, load_preset
from acfd.training.lr_schedule import scale_milestones
from acfd.training.precision import CHOICES as PRECISIONS


class TrainError(RuntimeError):
    """A problem the user can fix (bad data path, too few images, nothing to resume); one line."""


def option(
    default=dataclasses.MISSING, help: str = "", *, preset: str | None = None, cli: dict | None = None, **argparse_kw
):
    """A ``TrainOptions`` field: its default and meaning, once. ``acfd train`` makes its flag from it.

    ``preset``: the preset key a ``None`` default falls back to (``--help`` shows that preset value);
    ``cli``: argparse settings of ``acfd train`` that differ from the Python API's (``{}``: no flag);
    other keywords go to ``add_argument`` (``choices``, ``metavar``, ``nargs``).
    """
    return dataclasses.field(default=default, metadata={"help": help, "preset": preset, "cli": cli, **argparse_kw})


@dataclass
class TrainOptions:
    """One training run. ``acfd train`` builds its flags from these fields (``acfd.training.train_cli``)."""

    data: str | tuple[str, ...] = option(
        help="training annotations: iCartoonFace CSV, COCO JSON, YOLO data.yaml or folder (its "
        "train split), Pascal VOC folder, or a folder holding one; repeat for several sources, or give "
        "one sources YAML (acfd.training.data.sources: per-source images, hold-out and sampling weight)",
        action="append",
        metavar="PATH",
    )
    out: str = option(help="run folder for checkpoints, metrics and curves")
    preset: str = option("tiny", "model preset: acfd51 (the paper), mid, tiny, or a YAML file")
    images: str | None = option(None, "image folder for --data/--val when it is not beside the annotations")
    val: str | tuple[str, ...] | None = option(
        None,
        "validation annotations (a data.yaml: its val split); enables best.pt and per-epoch mAP@0.5; with "
        "several --data, one --val per --data in the same order (best.pt: the mean over sources)",
        action="append",
        metavar="PATH",
    )
    format: str | None = option(
        None,
        "annotation format of --data and --val; None: detected from the path",
        choices=("coco", "csv", "yolo", "voc"),
    )
    category: str | None = option(None, "class to keep when the annotations have several (name or id)")
    epochs: int | None = option(None, "epochs to train", preset="train.epochs")
    batch: int = option(16, "global batch size (all processes together); LR scales with it")
    resume: bool = option(False, "continue the run in --out from its last.pt")
    init: str | None = option(
        None,
        "start from this checkpoint's model weights (same network), e.g. the default "
        "weights acfd/weights/acfd_mid_cartoons.pt (preset mid_cartoons), with a fresh "
        "optimizer and LR schedule",
        metavar="CKPT",
    )
    warmup_iters: int | None = option(
        None, "LR warm-up iterations (at most a fifth of a shorter run)", preset="train.warmup_iters"
    )
    device: str = option(
        "cpu",
        "cpu or cuda",
        choices=("cpu", "cuda"),
        cli={"default": None, "help": "None: cuda when available, else cpu"},
    )
    workers: int = option(
        0, "data-loading processes per training process", cli={"default": min(4, os.cpu_count() or 1)}
    )
    precision: str = option(
        "auto",
        "forward-pass precision: auto = bf16 on a CPU with AVX512-BF16/AMX (else "
        "fp32), bf16 on CUDA where supported (else fp16 with grad scaling); weights "
        "and losses stay fp32",
        choices=PRECISIONS,
    )
    lr_milestones: tuple[int, ...] | None = option(
        None,
        "epochs at which the LR is divided by 10 (the preset's are scaled to --epochs, rounded half up)",
        preset="train.lr_milestones",
        nargs="+",
        metavar="EPOCH",
    )
    seed: int = option(0, "seed for initialisation, data order and augmentation")
    kernels: str = option(
        "auto", "DAM matching / MBC loss implementation: OpenAI Triton kernels or the PyTorch references", choices=IMPLS
    )
    max_iters: int | None = option(None, "stop after this many iterations in all (short trials; None: no limit)")
    max_minutes: float | None = option(
        None,
        "wall-clock budget: time the first steps, compress the epochs and LR "
        "schedule to fit M minutes, stop validated and checkpointed at the "
        "deadline (None: no limit)",
        metavar="M",
    )
    pause_after: float | None = option(
        None,
        "a piece of a longer run: stop at the last epoch end that fits M minutes of this process "
        "(checkpointed; --resume continues exactly, the plan unchanged); None: no limit",
        metavar="M",
    )
    cache_images: bool = option(
        False,
        "decode every training image once into memory before training (about width x height x 3 bytes "
        "each): the loader then only augments; for GPU runs, where the loader is the bottleneck",
    )
    eval_every: int = option(1, "validate every K epochs (and after the last)")
    size: int | None = option(None, "training input side in pixels", preset="train.input_size")
    sync_bn: bool = option(False, "under torchrun: BatchNorm statistics over all processes")
    log_every: int = option(10, "write a metrics.csv row every N iterations")
    progress: bool = option(True, "progress bars", cli={"flag": "--no-progress", "help": "no progress bars"})
    command: str | None = option(None, "recorded in RUN/command.txt (None: this process's argv)", cli={})
    on_epoch_end: Callable[[int], None] | None = option(
        None, "called with the epoch just saved (on every rank)", cli={}
    )


@dataclass
class TrainResult:
    status: str  # "done" or "nan"
    epochs_done: int
    iteration: int
    best_ap: float | None
    last_ap: float | None
    message: str
    model: torch.nn.Module  # the weights to use: the EMA when it is on
    rng: dict | None = None  # RNG states at the end (capture_rng_state), for the exact-resume test


def resolve_preset(opts: TrainOptions) -> Preset:
    """The preset with this run's epochs, milestones and input size written in (what gets saved)."""
    try:
        preset = load_preset(opts.preset)
    except ValueError as err:
        raise TrainError(f"--preset: {err}") from err
    t = preset.train
    epochs = opts.epochs or t.epochs
    milestones = (
        opts.lr_milestones if opts.lr_milestones is not None else scale_milestones(t.lr_milestones, t.epochs, epochs)
    )
    size = opts.size or t.input_size
    warmup = t.warmup_iters if opts.warmup_iters is None else opts.warmup_iters
    train_cfg = dataclasses.replace(
        t, epochs=epochs, lr_milestones=tuple(milestones), input_size=size, warmup_iters=warmup
    )
    inference = inference_for_size(preset.inference, size, t.input_size)  # validate at the size trained
    return dataclasses.replace(preset, train=train_cfg, inference=inference)
