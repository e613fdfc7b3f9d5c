"""Write a checkpoint's weights-only copy for shipping (the embedded default model).

    .venv/bin/python scripts/package_weights.py RUN/best.pt acfd/weights/acfd_tiny_icartoonface.pt

Keeps the model weights, epoch, iteration and the preset, drops the optimizer, scheduler and RNG
state (a few MB instead of twice that). The preset's test scales are set for the size the model
was trained at (``inference_for_size``), whatever version of ``acfd train`` wrote the checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from acfd.training.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from acfd.training.config import Preset, inference_for_size, load_preset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("out")
    args = parser.parse_args(argv)
    try:
        ckpt = read_checkpoint(args.checkpoint)
    except CheckpointError as err:
        print(f"package_weights: {err}", file=sys.stderr)
        return 1
    preset = Preset.from_dict(ckpt["preset"])
    base = load_preset(preset.name)
    inference = inference_for_size(base.inference, preset.train.input_size, base.train.input_size)
    preset = dataclasses.replace(preset, inference=inference)
    keep = {k: ckpt[k] for k in ("model", "epoch", "iteration") if k in ckpt}
    keep["preset"] = preset.to_dict()
    save_checkpoint(args.out, keep)
    scales = ", ".join(f"{h}x{w}" for h, w in inference.test_scales)
    print(f"wrote {args.out}: preset {preset.name}, trained at {preset.train.input_size}, test scales {scales}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
