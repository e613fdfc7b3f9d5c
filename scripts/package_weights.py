"""Write a checkpoint's weights-only copy for shipping (the embedded default model).

    .venv/bin/python scripts/package_weights.py RUN/best.pt acfd/weights/acfd_mid_cartoons.pt \
        [--threshold-from EVAL.json] [--scales 288x387 384x516 480x645]

Keeps the model weights (the EMA, for checkpoints that have one), epoch, iteration and the preset;
drops the raw training weights, optimizer, scheduler and RNG state. The preset's test scales are set
for the size the model was trained at (``inference_for_size``), or to ``--scales``. With
``--threshold-from`` (an ``acfd eval --json`` file of the hold-out), the display threshold that
``acfd detect``, ``acfd demo`` and the clients default to becomes that evaluation's best-F1 score.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from acfd.training.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from acfd.training.config import Preset, inference_for_size, load_preset
from acfd.training.info import parse_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("out")
    parser.add_argument(
        "--threshold-from",
        default=None,
        metavar="EVAL_JSON",
        help="display threshold = best_f1.threshold of this acfd eval --json output",
    )
    parser.add_argument("--scales", nargs="+", default=None, metavar="HxW", help="test scales to ship")
    args = parser.parse_args(argv)
    try:
        ckpt = read_checkpoint(args.checkpoint)
    except CheckpointError as err:
        print(f"package_weights: {err}", file=sys.stderr)
        return 1
    preset = Preset.from_dict(ckpt["preset"])
    base = load_preset(preset.name)
    inference = inference_for_size(base.inference, preset.train.input_size, base.train.input_size)
    if args.scales:
        try:
            scales = tuple(parse_size(text, "--scales") for text in args.scales)
        except ValueError as err:
            print(f"package_weights: {err}", file=sys.stderr)
            return 1
        inference = dataclasses.replace(inference, test_scales=scales)
    if args.threshold_from:
        try:
            best = json.loads(open(args.threshold_from).read())["best_f1"]
            threshold = round(float(best["threshold"]), 3)
        except (OSError, ValueError, KeyError, TypeError) as err:
            print(
                f"package_weights: --threshold-from {args.threshold_from}: no best_f1 threshold ({err})",
                file=sys.stderr,
            )
            return 1
        inference = dataclasses.replace(inference, display_threshold=threshold)
    preset = dataclasses.replace(preset, inference=inference)
    keep = {k: ckpt[k] for k in ("model", "epoch", "iteration") if k in ckpt}
    keep["preset"] = preset.to_dict()
    save_checkpoint(args.out, keep)
    scales = ", ".join(f"{h}x{w}" for h, w in inference.test_scales)
    print(
        f"wrote {args.out}: preset {preset.name}, trained at {preset.train.input_size}, test scales {scales}, "
        f"display threshold {inference.display_threshold:g}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
