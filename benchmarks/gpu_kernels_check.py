"""One-shot GPU check of the training kernels: compile, compare with the references, benchmark.

    python3 benchmarks/gpu_kernels_check.py OUTDIR [--repeat 20] [--no-sweep]

Meant for a session that has an NVIDIA GPU (an H200) for a few minutes: it needs no install (it
finds the repository's ``acfd`` package from this file's location) and writes everything it
measured to ``OUTDIR/gpu_kernels_check.json``; it exits 1 if a kernel disagrees with its reference.

1. DAM matching, compiled Triton kernel vs the PyTorch reference on the GPU: random scenes, the
   paper-shaped realistic batch and the crowded batch, with and without the best-anchor fallback.
   Labels and indices must be identical, IoUs within 1e-6.
2. MBC focal loss, fp32 / fp16 / bf16 at the paper's shape plus extreme logits: loss within 1e-5
   relative, gradients within 1e-5 (one unit in the last place for fp16 / bf16).
3. The benchmark cases of ``acfd.kernels.bench`` (the same as ``acfd bench kernels --json``).
4. A sweep of the DAM kernel's tile sizes and warps (``--no-sweep`` skips it), to pick defaults.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _import_acfd() -> None:
    """Use the installed ``acfd`` if there is one, else map the repository folders by hand."""
    try:
        import acfd.kernels  # noqa: F401
    except ModuleNotFoundError:
        sys.path.insert(0, str(ROOT))
        import acfd

        acfd.__path__.append(str(ROOT))  # acfd.kernels -> ROOT/kernels, acfd.training -> ROOT/training


def check_dam(device: str) -> list[dict]:
    import torch

    from acfd.kernels import bench
    from acfd.kernels.dam_match import dam_match

    scenes = {"realistic": bench.dam_inputs(), "crowded": bench.dam_inputs(crowded=True)}
    for seed in range(3):
        small = bench.dam_inputs(batch=4, image=320, seed=seed)
        small.gt_count[seed] = 0  # an image without faces
        scenes[f"random{seed}"] = small
    rows = []
    for name, inp in scenes.items():
        inp = inp.to(device)
        for fallback in (False, True):
            args = (inp.anchors, inp.pred_boxes, inp.gt_boxes, inp.gt_count)
            ref = dam_match(*args, best_anchor_fallback=fallback, impl="torch")
            got = dam_match(*args, best_anchor_fallback=fallback, impl="triton")
            row = {
                "scene": name, "fallback": fallback,
                "label_mismatches": int((ref.labels != got.labels).sum()),
                "index_mismatches": int((ref.gt_index != got.gt_index).sum()),
                "iou_max_abs_diff": float((ref.iou - got.iou).abs().max()),
                "label_counts": torch.bincount(ref.labels.flatten(), minlength=3).tolist(),
            }
            row["ok"] = row["label_mismatches"] == 0 and row["index_mismatches"] == 0 and row["iou_max_abs_diff"] <= 1e-6
            rows.append(row)
    return rows


def check_loss(device: str) -> list[dict]:
    import torch

    from acfd.kernels import bench
    from acfd.kernels.mbc_loss import mbc_focal_loss

    cases = {}
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        cases[str(dtype).replace("torch.", "")] = bench.loss_inputs(dtype=dtype)
    extreme = torch.tensor([[-200.0, -60.0, -20.0, 0.0, 20.0, 60.0, 200.0] * 3])
    cases["extreme"] = (extreme, torch.tensor([[0] * 7 + [1] * 7 + [2] * 7]))
    cases["no_psi2"] = (cases["float32"][0], cases["float32"][1].clamp(max=1))
    ulp = {torch.float32: 1e-5, torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7}
    rows = []
    for name, (logits, labels) in cases.items():
        logits, labels = logits.to(device), labels.to(device)
        out = {}
        for impl in ("torch", "triton"):
            x = logits.clone().requires_grad_(True)
            loss = mbc_focal_loss(x, labels, impl=impl)
            loss.backward()
            out[impl] = (loss.detach().float(), x.grad.float())
        (ref_loss, ref_grad), (got_loss, got_grad) = out["torch"], out["triton"]
        rel = float((got_loss - ref_loss).abs() / ref_loss.abs().clamp(min=1e-30))
        excess = (got_grad - ref_grad).abs() - ulp[logits.dtype] * ref_grad.abs()
        row = {
            "case": name, "loss_ref": float(ref_loss), "loss_rel_diff": rel,
            "grad_max_abs_diff": float((got_grad - ref_grad).abs().max()),
            "grad_max_excess_over_tolerance": float(excess.max()),
        }
        row["ok"] = rel <= 1e-5 and row["grad_max_excess_over_tolerance"] <= 1e-7 and bool(torch.isfinite(got_grad).all())
        rows.append(row)
    return rows


def sweep_dam_tiles(device: str, repeat: int) -> list[dict]:
    import torch
    import triton

    from acfd.kernels import bench
    from acfd.kernels.dam_match import triton_kernel

    rows = []
    for variant in ("realistic", "crowded"):
        inp = bench.dam_inputs(crowded=variant == "crowded").to(device)
        args = (inp.anchors, inp.pred_boxes, inp.gt_boxes, inp.gt_count, 0.35, 0.7, False)
        for warps in (4, 8):
            for block_a in (64, 128, 256):
                for block_g in (16, 32, 64):
                    triton_kernel.NUM_WARPS = warps
                    fn = functools.partial(triton_kernel.dam_match_triton, *args, block_a=block_a, block_g=block_g)
                    ms = triton.testing.do_bench(fn, warmup=5, rep=max(repeat, 10))
                    rows.append({"variant": variant, "num_warps": warps, "block_a": block_a, "block_g": block_g, "ms": round(ms, 4)})
    triton_kernel.NUM_WARPS = 4
    torch.cuda.synchronize()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path, help="folder for gpu_kernels_check.json")
    parser.add_argument("--repeat", type=int, default=20, help="timed runs per benchmark case")
    parser.add_argument("--no-sweep", action="store_true", help="skip the DAM tile-size sweep")
    args = parser.parse_args(argv)
    _import_acfd()
    import torch
    import triton

    if not torch.cuda.is_available():
        print("gpu_kernels_check: no CUDA device: this script is for a GPU machine", file=sys.stderr)
        return 2
    from acfd.kernels import bench

    args.outdir.mkdir(parents=True, exist_ok=True)
    report: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"), "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__, "triton": triton.__version__,
    }
    out = args.outdir / "gpu_kernels_check.json"

    def step(key, fn):
        started = time.perf_counter()
        try:
            report[key] = fn()
        except Exception as err:  # keep what the other steps measured
            report[key] = {"error": f"{type(err).__name__}: {err}"}
        report[f"{key}_s"] = round(time.perf_counter() - started, 1)
        out.write_text(json.dumps(report, indent=2))
        print(f"{key}: {json.dumps(report[key])[:2000]}", flush=True)

    step("dam_check", lambda: check_dam("cuda"))
    step("loss_check", lambda: check_loss("cuda"))
    step("bench", lambda: bench.run_all("cuda", repeat=args.repeat))
    if not args.no_sweep:
        step("dam_tile_sweep", lambda: sweep_dam_tiles("cuda", args.repeat))
    checks = [r for key in ("dam_check", "loss_check") for r in (report[key] if isinstance(report[key], list) else [{"ok": False}])]
    report["all_ok"] = all(r["ok"] for r in checks)
    out.write_text(json.dumps(report, indent=2))
    print(f"all_ok: {report['all_ok']}  -> {out}")
    return 0 if report["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
