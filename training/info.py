"""``acfd info``: size, anchors, strides and compute of a preset's network at one input size.

Nothing is computed on real tensors: the network is built on PyTorch's ``meta`` device (shapes
only), so even acfd51 at 800x1075 answers at once. Figures, for the train form and the fused
(deploy) form:

* ``params`` - learnable parameters;
* ``size_mb`` - fp32 bytes of the state dict's floating tensors (parameters plus BatchNorm running
  statistics) / 1e6: what a float32 checkpoint of the weights weighs;
* ``gflops`` - ``2 x`` multiply-accumulates of every convolution and linear layer for one image,
  / 1e9 (BatchNorm, activations, pooling, eSE scaling, fusion sums and resizing are not counted).
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
from torch import nn

from acfd.inference.anchors import anchor_count, level_sizes
from acfd.training.config import available_presets, load_preset
from acfd.training.model import ACB, build_model

SIZE_LIMIT_MB = 200.0  # the iCartoonFace challenge's model-size limit (paper abstract)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset", default="acfd51", help=f"preset name ({', '.join(available_presets())}) or a preset YAML file"
    )
    parser.add_argument("--input", default="640x640", help="input size HxW in pixels (rows x columns)")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print JSON: preset, input, anchors, strides, level_sizes, params, size_mb (fp32 weights + BN "
        "statistics / 1e6), gflops (2 x conv/linear multiply-accumulates for one image, our own count) and "
        "the same three for the fused deploy form",
    )


def parse_size(text: str, flag: str = "--input") -> tuple[int, int]:
    """``"480x645"`` -> ``(480, 645)``; ``ValueError`` naming ``flag`` with a readable message otherwise."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"{flag} {text!r}: expected HxW with two positive integers, e.g. 640x640")
    height, width = int(parts[0]), int(parts[1])
    if height <= 0 or width <= 0:
        raise ValueError(f"{flag} {text!r}: height and width must be positive")
    return height, width


def conv_macs(model: nn.Module, height: int, width: int) -> dict[nn.Module, int]:
    """Multiply-accumulates of each convolution / linear layer for one ``height x width`` image."""
    macs: dict[nn.Module, int] = {}

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        per_output = (
            module.in_features
            if isinstance(module, nn.Linear)
            else (module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1])
        )
        macs[module] = macs.get(module, 0) + output[0].numel() * per_output  # output[0]: one image

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        device = next(model.parameters()).device
        with torch.no_grad():
            model(torch.zeros(1, 3, height, width, device=device))
    finally:
        for handle in handles:
            handle.remove()
    return macs


def count_gflops(model: nn.Module, height: int, width: int) -> float:
    """``2 x`` conv/linear multiply-accumulates for one ``height x width`` image, in GFLOPs."""
    return 2.0 * sum(conv_macs(model, height, width).values()) / 1e9


def weight_figures(model: nn.Module) -> tuple[int, float]:
    """``(params, size_mb)``: learnable parameters and fp32 MB of all floating state-dict tensors."""
    params = sum(p.numel() for p in model.parameters())
    floats = sum(t.numel() for t in model.state_dict().values() if t.is_floating_point())
    return params, floats * 4 / 1e6


def describe(preset_name: str, height: int, width: int) -> dict:
    """Everything ``acfd info`` reports, as a JSON-ready dict."""
    preset = load_preset(preset_name)
    strides = list(preset.model.strides)
    with torch.device("meta"):
        model = build_model(preset).eval()
    params, size_mb = weight_figures(model)
    acbs = [m for m in model.modules() if isinstance(m, ACB)]
    model.fuse()
    fused_params, fused_mb = weight_figures(model)
    # One shape-only pass over the fused form; the train form differs only in each ACB's 1xk and kx1
    # branches, which have the square conv's output shape and in_channels x k weights per output.
    macs = conv_macs(model, height, width)
    fused_macs = sum(macs.values())
    branch_macs = sum(macs[a.fused] * 2 * a.kernel_size // a.kernel_size**2 for a in acbs)
    gflops, fused_gflops = 2.0 * (fused_macs + branch_macs) / 1e9, 2.0 * fused_macs / 1e9
    return {
        "preset": preset.name,
        "input": [height, width],
        "anchors": anchor_count(height, width, strides),
        "strides": strides,
        "level_sizes": [list(s) for s in level_sizes(height, width, strides)],
        "anchor_sides": [preset.model.anchor_scale * s for s in strides],
        "params": params,
        "size_mb": round(size_mb, 3),
        "gflops": round(gflops, 3),
        "fused": {"params": fused_params, "size_mb": round(fused_mb, 3), "gflops": round(fused_gflops, 3)},
        "size_limit_mb": SIZE_LIMIT_MB,
    }


def _table(info: dict) -> str:
    h, w = info["input"]
    fused = info["fused"]
    lines = [
        f"preset   {info['preset']}    input {h}x{w}",
        f"anchors  {info['anchors']}    strides {info['strides']}",
        f"levels   {' '.join(f'{a}x{b}' for a, b in info['level_sizes'])}",
        "",
        f"{'form':<8}{'params':>14}{'size (MB fp32)':>16}{'GFLOPs':>10}",
        f"{'train':<8}{info['params']:>14,}{info['size_mb']:>16.1f}{info['gflops']:>10.2f}",
        f"{'fused':<8}{fused['params']:>14,}{fused['size_mb']:>16.1f}{fused['gflops']:>10.2f}",
        "",
        f"size limit {info['size_limit_mb']:.0f} MB: {'within' if info['size_mb'] < info['size_limit_mb'] else 'OVER'}"
        " (train form); GFLOPs = 2 x conv/linear multiply-accumulates for one image",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        height, width = parse_size(args.input)
        info = describe(args.preset, height, width)
    except ValueError as err:
        print(f"acfd info: {err}", file=sys.stderr)
        return 2
    print(json.dumps(info, indent=2) if args.json else _table(info))
    return 0
