"""One GPU check: kernels against their references, kernel, NMS, training and inference speed.

    python benchmarks/gpu_check.py OUT [--only STEP ...]     # on a GPU host (one H200: under 8 minutes)
    python benchmarks/gpu_check.py OUT --dry-run             # the same code on CPU at tiny shapes

Meant for a session that has an NVIDIA GPU for a few minutes. It needs no install beyond the
project's own (it finds the ``acfd`` package from this file's location), writes everything to
``OUT/gpu_check.json`` after every step (a step that fails records its error; the others still
run) and exits 0 when every check agrees, 1 when one does not, 2 without a CUDA device. (Over 500
lines on purpose: one script to carry to a GPU host for a few minutes, every step in it.)

Steps (``--only`` runs some):

``dam_check``       DAM matching, Triton kernel vs PyTorch reference at the paper's shape (B = 16,
                    A = 34,125 at 640 x 640) on the realistic (1-300 faces) and crowded (1,000)
                    batches and three small random scenes, fallback off and on: labels and indices
                    identical, IoUs within 1e-6.
``loss_check``      MBC focal loss fp32 / fp16 / bf16 at the paper's shape plus extreme logits:
                    loss within 1e-5 relative, gradients within 1e-5 (one ulp for fp16 / bf16).
``kernel_bench``    the cases of ``acfd.kernels.bench``: Triton vs eager PyTorch vs ``torch.compile``,
                    GB/s and the multiple of the bandwidth floor at the device's peak (``PEAK_GBPS``).
``dam_tile_sweep``  the DAM kernel at the spill-free tiles of ``python -m acfd.kernels.aot_report``.
``nms``             CuPy NMS kernels vs NumPy: identical kept indices, times (NVRTC preloaded from
                    the ``nvidia-cuda-nvrtc-cu12`` wheel, ``kernels/nms/nvrtc.py``).
``train_speed``     ``acfd51`` training steps/s at 640, batch 16, bf16 autocast, SGD, synthetic
                    images with realistic faces: Triton kernels vs the torch references.
``inference``       ``acfd51`` three-scale detection of one 1920 x 1080 frame (fused model, fp16,
                    torch): end to end (resize, forward x 3, postprocess with NMS) and forwards only.

``--dry-run`` sets ``TRITON_INTERPRET=1`` and runs every step on CPU at tiny shapes (batch 2, 128 px,
the ``tiny`` preset, a 270 x 480 frame, fp32 inference, ``torch.compile`` with the eager backend),
so that the script cannot rot between the rare GPU sessions; the suite runs it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("dam_check", "loss_check", "kernel_bench", "dam_tile_sweep", "nms", "train_speed", "inference")
# Peak HBM bandwidth in GB/s by device name (vendor figures), for "GB/s against the device's peak".
PEAK_GBPS = (
    ("H200", 4800.0),
    ("H100 PCIe", 2000.0),
    ("H100", 3350.0),
    ("A100-SXM4-80GB", 2039.0),
    ("A100 80GB PCIe", 1935.0),
    ("A100", 1555.0),
    ("L40S", 864.0),
)
SPILL_FREE_TILES = ((128, 16, 8), (64, 32, 8), (64, 16, 8), (64, 16, 4), (128, 32, 4))  # last: spills, for contrast


@dataclasses.dataclass(frozen=True)
class Shapes:
    batch: int
    image: int
    faces: tuple[int, int]  # most faces in an image of the realistic batch; in the crowded image
    repeat: int
    train_preset: str
    train_steps: int  # timed, after the first step and ``warmup`` more
    warmup: int
    frame_hw: tuple[int, int]
    test_scales: tuple[tuple[int, int], ...]
    nms_sizes: tuple[int, ...]
    inference_dtype: str
    compile_backend: str


GPU = Shapes(
    16,
    640,
    (300, 1000),
    20,
    "acfd51",
    10,
    2,
    (1080, 1920),
    ((480, 645), (640, 860), (800, 1075)),
    (100, 1000, 3000, 10000, 20000),
    "float16",
    "inductor",
)
DRY = Shapes(
    2, 128, (12, 24), 2, "tiny", 1, 0, (270, 480), ((96, 129), (128, 172), (160, 215)), (10, 200), "float32", "eager"
)


def _import_acfd() -> None:
    """Use the installed ``acfd`` if there is one, else map the repository folders by hand."""
    try:
        import acfd.kernels  # noqa: F401
    except ModuleNotFoundError:
        sys.path.insert(0, str(ROOT))
        import acfd

        acfd.__path__.append(str(ROOT))  # acfd.kernels -> ROOT/kernels, acfd.training -> ROOT/training


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def median_ms(fn, repeat: int, device: str, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeat):
        tic = time.perf_counter()
        fn()
        _sync(device)
        times.append(1e3 * (time.perf_counter() - tic))
    return round(statistics.median(times), 4)


def peak_gbps(device: str) -> float | None:
    import torch

    if device != "cuda":
        return None
    name = torch.cuda.get_device_name()
    return next((gbps for key, gbps in PEAK_GBPS if key in name), None)


# ---------------------------------------------------------------- correctness


def dam_check(device: str, shapes: Shapes) -> list[dict]:
    import torch

    from acfd.kernels import bench
    from acfd.kernels.dam_match import dam_match

    scenes = {
        "realistic": bench.dam_inputs(shapes.batch, shapes.image, faces=shapes.faces),
        "crowded": bench.dam_inputs(shapes.batch, shapes.image, crowded=True, faces=shapes.faces),
    }
    for seed in range(3):
        small = bench.dam_inputs(batch=2, image=min(shapes.image, 320), seed=seed, faces=shapes.faces)
        small.gt_count[seed % 2] = 0  # an image without faces
        scenes[f"random{seed}"] = small
    rows = []
    for name, inp in scenes.items():
        inp = inp.to(device)
        for fallback in (False, True):
            args = (inp.anchors, inp.pred_boxes, inp.gt_boxes, inp.gt_count)
            ref = dam_match(*args, best_anchor_fallback=fallback, impl="torch")
            got = dam_match(*args, best_anchor_fallback=fallback, impl="triton")
            row = {
                "scene": name,
                "fallback": fallback,
                "anchors": int(inp.anchors.shape[0]),
                "max_faces": int(inp.gt_boxes.shape[1]),
                "label_mismatches": int((ref.labels != got.labels).sum()),
                "index_mismatches": int((ref.gt_index != got.gt_index).sum()),
                "iou_max_abs_diff": float((ref.iou - got.iou).abs().max()),
                "label_counts": torch.bincount(ref.labels.flatten(), minlength=3).tolist(),
            }
            row["ok"] = (
                row["label_mismatches"] == 0 and row["index_mismatches"] == 0 and row["iou_max_abs_diff"] <= 1e-6
            )
            rows.append(row)
    return rows


def loss_check(device: str, shapes: Shapes) -> list[dict]:
    import torch

    from acfd.kernels import bench
    from acfd.kernels.mbc_loss import mbc_focal_loss
    from acfd.inference.anchors import make_anchors

    num_anchors = make_anchors(shapes.image, shapes.image).shape[0]
    cases = {
        str(d).replace("torch.", ""): bench.loss_inputs(shapes.batch, num_anchors, dtype=d)
        for d in (torch.float32, torch.float16, torch.bfloat16)
    }
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
            "case": name,
            "shape": list(logits.shape),
            "loss_ref": float(ref_loss),
            "loss_rel_diff": rel,
            "grad_max_abs_diff": float((got_grad - ref_grad).abs().max()),
            "grad_max_excess_over_tolerance": float(excess.max()),
        }
        row["ok"] = (
            rel <= 1e-5 and row["grad_max_excess_over_tolerance"] <= 1e-7 and bool(torch.isfinite(got_grad).all())
        )
        rows.append(row)
    return rows


def nms(device: str, shapes: Shapes) -> dict:
    import numpy as np

    from acfd.kernels.nms import cupy_usable, nms as run_nms
    from acfd.kernels.nms.nvrtc import preload_nvrtc

    nvrtc_note = preload_nvrtc()  # before CuPy's first compile: CuPy 13 does not find the wheel's NVRTC
    reason = cupy_usable()
    rng = np.random.default_rng(0)
    cases = [("random", n, thr, *_random_boxes(rng, n)) for n in shapes.nms_sizes for thr in (0.3, 0.55)]
    cases += [("tie-heavy", n, thr, *_tie_boxes(rng, n)) for n in shapes.nms_sizes[1:3] for thr in (0.0, 0.5)]
    cases += [("one box", 1, 0.5, *_random_boxes(rng, 1)), ("empty", 0, 0.5, *_random_boxes(rng, 0))]
    report: dict = {"cupy": reason or "usable", "nvrtc_preload": nvrtc_note or "ok", "cases": []}
    if reason is None:
        import cupy

        report["cupy_version"] = cupy.__version__
        sync = cupy.cuda.Device().synchronize
    for kind, n, thr, boxes, scores in cases:
        expected = run_nms(boxes, scores, thr)
        repeats = shapes.repeat if n <= 3000 else max(3, shapes.repeat // 4)
        entry = {
            "kind": kind,
            "boxes": n,
            "iou_threshold": thr,
            "kept": int(expected.size),
            "numpy_ms": median_ms(lambda: run_nms(boxes, scores, thr), repeats, "cpu"),
        }
        if reason is None:
            boxes_gpu, scores_gpu = cupy.asarray(boxes), cupy.asarray(scores)
            got = cupy.asnumpy(run_nms(boxes_gpu, scores_gpu, thr))
            entry["identical"] = bool(got.dtype == np.int64 and np.array_equal(got, expected))

            def gpu_once():
                run_nms(boxes_gpu, scores_gpu, thr)
                sync()

            entry["cupy_ms"] = median_ms(gpu_once, repeats, "cpu")
            entry["speedup"] = round(entry["numpy_ms"] / max(entry["cupy_ms"], 1e-9), 2)
        report["cases"].append(entry)
    if reason is None:
        report["all_identical"] = all(c["identical"] for c in report["cases"])
    return report


def _random_boxes(rng, n, extent=1000.0, max_side=150.0):
    import numpy as np

    xy = rng.uniform(0, extent, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(2, max_side, (n, 2))], axis=1).astype(np.float32)
    return boxes, rng.random(n).astype(np.float32)


def _tie_boxes(rng, n):
    import numpy as np

    xy = rng.integers(0, 16, (n, 2)) * 4
    boxes = np.concatenate([xy, xy + rng.integers(1, 5, (n, 2)) * 8], axis=1).astype(np.float32)
    return boxes, (rng.integers(0, 5, n) / 4).astype(np.float32)


# ---------------------------------------------------------------- speed


def kernel_bench(device: str, shapes: Shapes) -> list[dict]:
    from acfd.kernels import bench

    peak = peak_gbps(device)
    rows = []
    for case in bench.CASES:
        row = bench.run_case(
            case,
            device,
            repeat=shapes.repeat,
            batch=shapes.batch,
            image=shapes.image,
            compile_backend=shapes.compile_backend,
            peak_gbps=peak,
            faces=shapes.faces,
            interpreter=device == "cpu",
        )
        if "gbps" in row and peak:
            row["pct_of_peak"] = round(100 * row["gbps"] / peak, 1)
        rows.append(row)
    return bench.add_speedups(rows)


def dam_tile_sweep(device: str, shapes: Shapes) -> list[dict]:
    import functools

    from acfd.kernels import bench
    from acfd.kernels.dam_match import triton_kernel

    tiles = SPILL_FREE_TILES if device == "cuda" else SPILL_FREE_TILES[:1]
    rows = []
    for variant in ("realistic", "crowded"):
        inp = bench.dam_inputs(shapes.batch, shapes.image, crowded=variant == "crowded", faces=shapes.faces).to(device)
        args = (inp.anchors, inp.pred_boxes, inp.gt_boxes, inp.gt_count, 0.35, 0.7, False)
        for block_a, block_g, warps in tiles:
            fn = functools.partial(
                triton_kernel.dam_match_triton, *args, block_a=block_a, block_g=block_g, num_warps=warps
            )
            rows.append(
                {
                    "variant": variant,
                    "block_a": block_a,
                    "block_g": block_g,
                    "num_warps": warps,
                    "default": (block_a, block_g, warps)
                    == (triton_kernel.BLOCK_A, triton_kernel.BLOCK_G, triton_kernel.NUM_WARPS),
                    "ms": median_ms(fn, shapes.repeat, device),
                }
            )
    return rows


def train_speed(device: str, shapes: Shapes) -> list[dict]:
    import torch

    from acfd.kernels import bench
    from acfd.training.config import load_preset
    from acfd.training.loss import DetectionLoss
    from acfd.training.model import build_model
    from acfd.training.trainer import make_optimizer

    preset = load_preset(shapes.train_preset)
    size, batch = shapes.image, shapes.batch
    gen = torch.Generator().manual_seed(0)
    counts = bench.face_counts(batch, shapes.faces[0])
    gt = torch.zeros(batch, max(counts), 4)
    for b, n in enumerate(counts):
        gt[b, :n] = bench.make_faces(n, size, gen)
    images = torch.randn(batch, 3, size, size, generator=gen).to(device).contiguous(memory_format=torch.channels_last)
    gt, count = gt.to(device), torch.tensor(counts, device=device)
    dtype = torch.bfloat16
    rows = []
    for kernels in ("triton", "torch"):
        torch.manual_seed(0)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        model = build_model(preset).to(device).to(memory_format=torch.channels_last).train()
        optimizer = make_optimizer(model, 1e-3, 0.9, 5e-4)
        loss_fn = DetectionLoss(preset.train, kernels=kernels)
        anchors = model.anchors(size, size, device)

        def step(model=model, optimizer=optimizer, loss_fn=loss_fn, anchors=anchors):
            with torch.autocast(device_type=device, dtype=dtype):
                logits, deltas = model(images)
            loss = loss_fn(logits, deltas, anchors, gt, count).total
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return loss.detach()

        tic = time.perf_counter()
        first = float(step())
        _sync(device)
        first_s = time.perf_counter() - tic
        ms = median_ms(step, shapes.train_steps, device, warmup=shapes.warmup)
        rows.append(
            {
                "kernels": kernels,
                "preset": shapes.train_preset,
                "size": size,
                "batch": batch,
                "autocast": "bf16",
                "ms_per_step": ms,
                "steps_per_s": round(1e3 / ms, 3),
                "images_per_s": round(1e3 * batch / ms, 1),
                "first_step_s": round(first_s, 2),
                "first_loss": round(first, 4),
                "peak_memory_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2) if device == "cuda" else None,
            }
        )
        del model, optimizer
    if rows[0]["ms_per_step"] and rows[1]["ms_per_step"]:
        rows[0]["speedup_vs_torch"] = round(rows[1]["ms_per_step"] / rows[0]["ms_per_step"], 2)
    return rows


def inference(device: str, shapes: Shapes) -> dict:
    import numpy as np
    import torch

    from acfd.training.config import load_preset
    from acfd.training.evaluation.inference import detect, network_input
    from acfd.training.model import Predictor, build_model

    class Cast(torch.nn.Module):
        """The predictor in ``dtype``: float32 images in, float32 scores and boxes out."""

        def __init__(self, inner, dtype):
            super().__init__()
            self.inner, self.dtype = inner, dtype

        def forward(self, images):
            scores, boxes = self.inner(images.to(self.dtype))
            return scores.float(), boxes.float()

    preset = load_preset(shapes.train_preset)
    dtype = getattr(torch, shapes.inference_dtype)
    torch.manual_seed(0)
    model = build_model(preset).eval().fuse()
    predictor = Cast(Predictor(model).to(device=device, dtype=dtype), dtype).eval()
    frame = np.random.default_rng(0).integers(0, 256, (*shapes.frame_hw, 3), dtype=np.uint8)
    cfg = preset.inference
    inputs = [torch.from_numpy(network_input(frame, hw))[None].to(device) for hw in shapes.test_scales]

    @torch.inference_mode()
    def forwards():
        return [predictor(x) for x in inputs]

    boxes, _ = detect(predictor, frame, shapes.test_scales, cfg)
    return {
        "preset": shapes.train_preset,
        "fused": True,
        "dtype": shapes.inference_dtype,
        "frame_hw": list(shapes.frame_hw),
        "scales": [list(s) for s in shapes.test_scales],
        "detections": int(len(boxes)),
        "end_to_end_ms": median_ms(
            lambda: detect(predictor, frame, shapes.test_scales, cfg), shapes.repeat, device, warmup=shapes.warmup
        ),
        "forwards_only_ms": median_ms(forwards, shapes.repeat, device, warmup=shapes.warmup),
        "note": "random weights and frame: latency only; end to end = resize + 3 forwards + postprocess (NumPy NMS)",
    }


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for gpu_check.json")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny shapes, Triton interpreter (for the suite)")
    parser.add_argument(
        "--only", nargs="+", choices=STEPS, default=list(STEPS), metavar="STEP", help=f"steps: {', '.join(STEPS)}"
    )
    args = parser.parse_args(argv)
    if args.dry_run:
        os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported
    _import_acfd()
    import torch
    import triton

    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA device: this script is for a GPU machine (--dry-run runs it on CPU)", file=sys.stderr)
        return 2
    device, shapes = ("cpu", DRY) if args.dry_run else ("cuda", GPU)
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "gpu_check.json"
    report: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "dry_run": args.dry_run,
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu (dry run)",
        "peak_gbps": peak_gbps(device),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "shapes": dataclasses.asdict(shapes),
    }
    started = time.perf_counter()
    steps = {
        "dam_check": dam_check,
        "loss_check": loss_check,
        "kernel_bench": kernel_bench,
        "dam_tile_sweep": dam_tile_sweep,
        "nms": nms,
        "train_speed": train_speed,
        "inference": inference,
    }
    for name in STEPS:
        if name not in args.only:
            continue
        tic = time.perf_counter()
        try:
            report[name] = steps[name](device, shapes)
        except Exception as err:  # keep what the other steps measure
            report[name] = {"error": f"{type(err).__name__}: {' '.join(str(err).split())[:500]}"}
        report[f"{name}_s"] = round(time.perf_counter() - tic, 1)
        out.write_text(json.dumps(report, indent=1))
        print(f"gpu_check: {name} ({report[f'{name}_s']} s): {json.dumps(report[name])[:1500]}", flush=True)
    report["all_ok"] = _all_ok(report)
    report["total_s"] = round(time.perf_counter() - started, 1)
    out.write_text(json.dumps(report, indent=1))
    print(f"gpu_check: all_ok {report['all_ok']} in {report['total_s']} s -> {out}")
    return 0 if report["all_ok"] else 1


def _all_ok(report: dict) -> bool:
    """Every step that ran has no error; every check agrees; CuPy NMS, where it ran, is identical."""
    for name in STEPS:
        value = report.get(name)
        if value is None:
            continue
        if isinstance(value, dict) and "error" in value:
            return False
        if name in ("dam_check", "loss_check") and not all(row["ok"] for row in value):
            return False
        if name == "nms" and value.get("all_identical") is False:
            return False
    return True


if __name__ == "__main__":
    sys.exit(main())
