"""Training throughput on this CPU: images/s of one full step (forward, DAM + MBC loss, backward,
SGD) per preset and precision, measured side by side in one run, plus parameters and GFLOPs.

    .venv/bin/python benchmarks/train_throughput.py --presets tiny mid --precisions fp32 bf16 \
        --size 384 --batch 16 --steps 6 [--json out.json]

The step is the trainer's own: channels-last model and inputs, ``Precision.autocast`` around the
forward pass, the loss in float32. Inputs are random pixels with a few random faces per image, so
data loading is not timed. Rows print as they finish; the last lines give bf16 / fp32 ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch


def step_rate(preset_name: str, precision_name: str, size: int, batch: int, steps: int, warmup: int) -> float:
    from acfd.training.config import load_preset
    from acfd.training.loss import DetectionLoss
    from acfd.training.model import build_model
    from acfd.training.precision import resolve_precision

    preset = load_preset(preset_name)
    precision = resolve_precision(precision_name, "cpu")
    torch.manual_seed(0)
    model = build_model(preset).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    loss_fn = DetectionLoss(preset.train, kernels="torch")
    anchors = model.anchors(size, size)
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, size, size, generator=gen).contiguous(memory_format=torch.channels_last)
    xy = torch.rand(batch, 4, 2, generator=gen) * size * 0.7
    wh = 16 + torch.rand(batch, 4, 2, generator=gen) * size * 0.25
    gt = torch.cat([xy, xy + wh], dim=-1).clamp(max=size)
    count = torch.full((batch,), 4, dtype=torch.int64)
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        with precision.autocast():
            logits, deltas = model(images)
        loss = loss_fn(logits, deltas, anchors, gt, count).total
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    return batch / times[len(times) // 2]  # median step


def main(argv: list[str] | None = None) -> int:
    from acfd.training.info import describe

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "mid"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    print(
        f"{'preset':<28}{'params':>10}{'GFLOPs':>9}  {'precision':<9}{'img/s':>8}   "
        f"({args.size}x{args.size}, batch {args.batch}, {torch.get_num_threads()} threads)",
        flush=True,
    )
    for name in args.presets:
        info = describe(name, args.size, args.size)
        for prec in args.precisions:
            rate = step_rate(name, prec, args.size, args.batch, args.steps, args.warmup)
            rows.append(
                {
                    "preset": name,
                    "params": info["params"],
                    "gflops": info["gflops"],
                    "precision": prec,
                    "images_per_s": round(rate, 2),
                    "size": args.size,
                    "batch": args.batch,
                }
            )
            print(f"{name:<28}{info['params'] / 1e6:>9.2f}M{info['gflops']:>9.2f}  {prec:<9}{rate:>8.2f}", flush=True)
    for name in args.presets:
        by = {r["precision"]: r["images_per_s"] for r in rows if r["preset"] == name}
        if "fp32" in by and "bf16" in by:
            print(f"{name}: bf16 / fp32 = {by['bf16'] / by['fp32']:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": torch.get_num_threads(), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
