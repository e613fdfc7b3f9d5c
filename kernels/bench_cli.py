"""``acfd bench kernels``: DAM matching and MBC loss microbenchmarks at the paper's training shape.

Prints one line per case (or, with ``--json``, one JSON document): milliseconds (median and min),
peak memory, GB/s and the multiple of the H200 bandwidth floor on CUDA, speed-ups over the
references. Cases that cannot run here (Triton without CUDA, a reference larger than the free
memory) are listed as skipped with the reason. The cases and the measurement are in ``bench.py``.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys

DEVICES = ("auto", "cpu", "cuda")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=["kernels"], help="what to benchmark")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON document")
    parser.add_argument("--device", choices=DEVICES, default="auto", help="auto = cuda when available, else cpu")
    parser.add_argument("--repeat", type=int, default=None, help="timed runs per case (default: 20 on cuda, 2 on cpu)")
    parser.add_argument(
        "--only", default="", metavar="TEXT", help="run only cases whose name contains TEXT, e.g. dam_match or /triton"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch (default: torch's choice; 1 is steadier on a shared machine)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import torch

    from acfd.kernels import bench

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        print("acfd bench: --device cuda but no CUDA device is available", file=sys.stderr)
        return 2
    repeat = args.repeat if args.repeat is not None else (20 if device == "cuda" else 2)
    if repeat < 1:
        print(f"acfd bench: --repeat must be at least 1, got {repeat}", file=sys.stderr)
        return 2
    if not any(args.only in c.name for c in bench.CASES):
        names = ", ".join(c.name for c in bench.CASES)
        print(f"acfd bench: --only {args.only!r} matches no case (cases: {names})", file=sys.stderr)
        return 2
    if args.threads is not None:
        if args.threads < 1:
            print(f"acfd bench: --threads must be at least 1, got {args.threads}", file=sys.stderr)
            return 2
        torch.set_num_threads(args.threads)
    progress = None
    if not args.no_progress:
        from tqdm import tqdm

        progress = functools.partial(tqdm, desc="kernel benchmarks", unit="case", file=sys.stderr)
    rows = bench.run_all(device, repeat=repeat, only=args.only, progress=progress)
    if args.json:
        meta = {
            "device": device,
            "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
            "torch": torch.__version__,
            "repeat": repeat,
            "threads": torch.get_num_threads(),
        }
        print(json.dumps({**meta, "cases": rows}, indent=2))
    else:
        for row in rows:
            print(format_row(row))
    return 0


def format_row(row: dict) -> str:
    if "skipped" in row:
        return f"{row['name']:<28} skipped: {row['skipped']}"
    parts = [f"{row['name']:<28} {row['ms']:>10.3f} ms (min {row['ms_min']:.3f})", f"peak {row['peak_mb']:.1f} MiB"]
    if "gbps" in row:
        parts.append(f"{row['gbps']:.0f} GB/s ({row['x_floor']:.1f}x floor)")
    parts += [f"{k[len('speedup_') :]} x{v}" for k, v in row.items() if k.startswith("speedup_")]
    return "  ".join(parts)
