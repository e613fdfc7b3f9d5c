"""``acfd train``: train a detector on one CPU, one GPU, or many GPUs through ``torchrun``.

    acfd train --data DATA --preset tiny --epochs 30 --batch 16 --out runs/tiny
    torchrun --nproc_per_node 4 -m acfd train --data DATA --preset acfd51 --batch 64 --device cuda --out runs/a51

Writes ``RUN/last.pt`` (every epoch), ``RUN/best.pt`` (best validation mAP@0.5, with ``--val``),
``RUN/metrics.csv``, ``RUN/curves.png``, ``RUN/command.txt`` and ``RUN/config.yaml``. Exit codes:
0 done, 2 a usage or data problem (one line on stderr), 3 stopped on a non-finite loss.
"""

from __future__ import annotations

import argparse
import os
import sys

from acfd.training.loss import KERNEL_CHOICES
from acfd.training.precision import CHOICES as PRECISIONS

EXIT_USAGE = 2
EXIT_NAN = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="training annotations: iCartoonFace CSV, COCO JSON, YOLO data.yaml "
                                                      "or folder (its train split), Pascal VOC folder, or a folder holding one")
    parser.add_argument("--images", default=None, help="image folder for --data/--val when it is not beside the annotations")
    parser.add_argument("--val", default=None, help="validation annotations (a data.yaml: its val split); enables best.pt "
                                                    "and per-epoch mAP@0.5")
    parser.add_argument("--format", default=None, choices=("coco", "csv", "yolo", "voc"),
                        help="annotation format of --data and --val; None: detected from the path")
    parser.add_argument("--category", default=None, help="class to keep when the annotations have several (name or id)")
    parser.add_argument("--preset", default="tiny", help="model preset: acfd51 (the paper), tiny, or a YAML file")
    parser.add_argument("--epochs", type=int, default=None, help="epochs to train (None: the preset's, 300)")
    parser.add_argument("--batch", type=int, default=16, help="global batch size (all processes together); LR scales with it")
    parser.add_argument("--out", required=True, help="run folder for checkpoints, metrics and curves")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    parser.add_argument("--init", default=None, metavar="CKPT",
                        help="start from this checkpoint's model weights (same preset), e.g. the default weights "
                             "acfd/weights/acfd_mid_icartoonface.pt (preset mid), with a fresh optimizer and LR schedule")
    parser.add_argument("--warmup-iters", type=int, default=None,
                        help="LR warm-up iterations (None: the preset's 1,000, at most a fifth of a shorter run)")
    parser.add_argument("--device", default=None, choices=["cpu", "cuda"], help="None: cuda when available, else cpu")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="data-loading processes per training process")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="forward-pass precision: auto = bf16 on a CPU with AVX512-BF16/AMX (else fp32), bf16 on "
                             "CUDA where supported (else fp16 with grad scaling); weights and losses stay fp32")
    parser.add_argument("--lr-milestones", type=int, nargs="+", default=None, metavar="EPOCH",
                        help="epochs at which the LR is divided by 10 (None: the preset's 200 250 280 of 300, "
                             "scaled to --epochs, rounded half up)")
    parser.add_argument("--seed", type=int, default=0, help="seed for initialisation, data order and augmentation")
    parser.add_argument("--kernels", default="auto", choices=KERNEL_CHOICES,
                        help="DAM matching / MBC loss implementation: OpenAI Triton kernels or the PyTorch references")
    parser.add_argument("--max-iters", type=int, default=None, help="stop after this many iterations in all (short trials; None: no limit)")
    parser.add_argument("--max-minutes", type=float, default=None, metavar="M",
                        help="wall-clock budget: time the first steps, compress the epochs and LR schedule to fit M "
                             "minutes, stop validated and checkpointed at the deadline (None: no limit)")
    parser.add_argument("--eval-every", type=int, default=1, help="validate every K epochs (and after the last)")
    parser.add_argument("--size", type=int, default=None, help="training input side in pixels (None: the preset's, 640)")
    parser.add_argument("--sync-bn", action="store_true", help="under torchrun: BatchNorm statistics over all processes")
    parser.add_argument("--log-every", type=int, default=10, help="write a metrics.csv row every N iterations")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (None: torch's choice, one per core); 1 is much faster on a busy machine")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--inject-nan-at", type=int, default=None, help=argparse.SUPPRESS)  # tests: NaN stop


def run(args: argparse.Namespace) -> int:
    import torch

    from acfd.training.trainer import TrainError, TrainOptions, train

    bad = _check(args)
    if bad:
        print(f"acfd train: {bad}", file=sys.stderr)
        return EXIT_USAGE
    if args.threads:
        torch.set_num_threads(args.threads)
    opts = TrainOptions(
        data=args.data, out=args.out, preset=args.preset, images=args.images, val=args.val, format=args.format,
        category=args.category, epochs=args.epochs,
        batch=args.batch, resume=args.resume, init=args.init, warmup_iters=args.warmup_iters, device=args.device or ("cuda" if torch.cuda.is_available() else "cpu"),
        workers=args.workers, precision=args.precision, lr_milestones=tuple(args.lr_milestones) if args.lr_milestones else None,
        seed=args.seed, kernels=args.kernels, max_iters=args.max_iters, max_minutes=args.max_minutes, eval_every=args.eval_every, size=args.size,
        sync_bn=args.sync_bn, log_every=args.log_every, progress=not args.no_progress, inject_nan_at=args.inject_nan_at,
    )
    try:
        result = train(opts)
    except TrainError as err:
        print(f"acfd train: {err}", file=sys.stderr)
        return EXIT_USAGE
    rank0 = int(os.environ.get("RANK", "0")) == 0
    if result.status == "nan":
        if rank0:
            print(f"acfd train: {result.message}", file=sys.stderr)
        return EXIT_NAN
    if rank0:
        print(result.message)
    return 0


def _check(args: argparse.Namespace) -> str | None:
    for flag, path in (("--data", args.data), ("--val", args.val), ("--images", args.images), ("--init", args.init)):
        if path is not None and not os.path.exists(path):
            return f"{flag} {path}: no such file or folder"
    for flag in ("epochs", "batch", "eval_every", "log_every", "max_iters", "threads"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            return f"--{flag.replace('_', '-')} {value}: must be at least 1"
    if args.max_minutes is not None and not args.max_minutes > 0:
        return f"--max-minutes {args.max_minutes}: must be more than 0"
    if args.warmup_iters is not None and args.warmup_iters < 0:
        return f"--warmup-iters {args.warmup_iters}: must be 0 or more"
    if args.workers < 0:
        return f"--workers {args.workers}: must be 0 or more"
    if args.size is not None and args.size < 64:
        return f"--size {args.size}: must be at least 64 pixels"
    if args.lr_milestones and any(m < 0 for m in args.lr_milestones):
        return f"--lr-milestones {args.lr_milestones}: epochs must be 0 or more"
    return None
