"""``acfd train``: train a detector on one CPU, one GPU, or many GPUs through ``torchrun``.

    acfd train --data DATA --preset tiny --epochs 30 --batch 16 --out runs/tiny
    torchrun --nproc_per_node 4 -m acfd train --data DATA --preset acfd51 --batch 64 --device cuda --out runs/a51

Writes ``RUN/last.pt`` (every epoch), ``RUN/best.pt`` (best validation mAP@0.5, with ``--val``),
``RUN/metrics.csv``, ``RUN/curves.png``, ``RUN/command.txt`` and ``RUN/config.yaml``. Exit codes:
0 done, 2 a usage or data problem (one line on stderr), 3 stopped on a non-finite loss.

The flags are made from the fields of ``acfd.training.options.TrainOptions`` (help, default, choices
written once there); defaults that come from the preset are shown from the loaded preset.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

EXIT_USAGE = 2
EXIT_NAN = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per ``TrainOptions`` field, made from the field (default, help, choices); plus ``--threads``.

    ``acfd.cli`` formats help with ``ArgumentDefaultsHelpFormatter``: it appends each default."""
    import typing

    from acfd.training.config import load_preset
    from acfd.training.options import TrainOptions

    hints = typing.get_type_hints(TrainOptions)
    preset = None
    for f in dataclasses.fields(TrainOptions):
        meta = dict(f.metadata)
        cli = meta.pop("cli")
        if cli == {}:
            continue  # Python API only
        cli = dict(cli or {})
        help_text, preset_key = meta.pop("help"), meta.pop("preset")
        kw = {"default": f.default, **meta, **{k: v for k, v in cli.items() if k not in ("flag", "help")}}
        flag = cli.get("flag", "--" + f.name.replace("_", "-"))
        help_text = cli.get("help", help_text)
        kind = next((t for t in typing.get_args(hints[f.name]) if t is not type(None)), hints[f.name])
        if typing.get_origin(kind) is tuple:
            kind = typing.get_args(kind)[0]
        if kw["default"] is dataclasses.MISSING:
            kw.pop("default")
            kw["required"] = True
        elif kind is bool:
            kw["action"] = "store_false" if kw["default"] else "store_true"
        elif kind is not str:
            kw["type"] = kind
        if preset_key is not None:
            if preset is None:
                preset = load_preset(TrainOptions.preset)
            section, key = preset_key.split(".")
            value = getattr(getattr(preset, section), key)
            shown = " ".join(map(str, value)) if isinstance(value, tuple) else value
            help_text += f" (%(default)s: the preset's {preset_key}, {shown} in {preset.name})"
        elif kw.get("action") == "store_false":
            help_text += "%(default).0s"  # shown empty: keeps the help formatter's "(default: True)" off
        parser.add_argument(flag, dest=f.name, help=help_text, **kw)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch (None: torch's choice, one per core); 1 is much faster on a busy machine",
    )


def options_from_args(args: argparse.Namespace):
    """``TrainOptions`` from parsed flags: every field that has a flag, lists as tuples."""
    import torch

    from acfd.training.options import TrainOptions

    given = vars(args)
    values = {f.name: given[f.name] for f in dataclasses.fields(TrainOptions) if f.name in given}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    values["device"] = values["device"] or ("cuda" if torch.cuda.is_available() else "cpu")
    return TrainOptions(**values)


def run(args: argparse.Namespace) -> int:
    import torch

    from acfd.training.trainer import TrainError, train

    bad = _check(args)
    if bad:
        print(f"acfd train: {bad}", file=sys.stderr)
        return EXIT_USAGE
    if args.threads:
        torch.set_num_threads(args.threads)
    opts = options_from_args(args)
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
    paths = [("--data", p) for p in args.data or ()] + [("--val", p) for p in args.val or ()]
    for flag, path in paths + [("--images", args.images), ("--init", args.init)]:
        if path is not None and not os.path.exists(path):
            return f"{flag} {path}: no such file or folder"
    for flag in ("epochs", "batch", "eval_every", "log_every", "max_iters", "threads"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            return f"--{flag.replace('_', '-')} {value}: must be at least 1"
    if args.max_minutes is not None and not args.max_minutes > 0:
        return f"--max-minutes {args.max_minutes}: must be more than 0"
    if args.pause_after is not None and not args.pause_after > 0:
        return f"--pause-after {args.pause_after}: must be more than 0"
    if args.warmup_iters is not None and args.warmup_iters < 0:
        return f"--warmup-iters {args.warmup_iters}: must be 0 or more"
    if args.workers < 0:
        return f"--workers {args.workers}: must be 0 or more"
    if args.size is not None and args.size < 64:
        return f"--size {args.size}: must be at least 64 pixels"
    if args.lr_milestones and any(m < 0 for m in args.lr_milestones):
        return f"--lr-milestones {args.lr_milestones}: epochs must be 0 or more"
    return None
