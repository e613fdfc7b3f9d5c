"""Training loader throughput on one core: images/s of decode, the paper's augmentation, mosaic, and the
feed rate this projects for N loader processes beside the GPU step rate it has to keep up with.

    .venv/bin/python benchmarks/loader_throughput.py --data travel/icf/sources.yaml --preset mid --size 640 \
        [--images 200] [--workers 16] [--tflops 790] [--json out.json]

One process, one OpenCV and one torch thread (a DataLoader worker's share of a core), timed in the
process's CPU time, so that the rate per core holds on a busy machine too. Stages, each
over the same ``--images`` samples (a fixed stride through the training records):

``decode``      ``read_image`` of the file (the packed WebP/JPEG or the original);
``augment``     ``DetectionDataset.__getitem__`` with mosaic off: decode, colour distortion, expand/crop
                or anchor-scale tiling, flip, resize, ``normalize`` to float32 CHW (what a worker hands over);
``full``        the same with the preset's ``mosaic_prob`` (a mosaic decodes and augments four images);
``uint8``       ``full`` handing over uint8 HWC instead (``DetectionDataset(uint8=True)``, what a CUDA run's
                workers do: ``batch_on_device`` normalises on the GPU);
``cached``      ``full`` with every image decoded once beforehand and kept in memory
                (``acfd train --cache-images``: the decode share of ``full`` disappears);
``uint8_cached`` both: what ``scripts/gpu_trip.py`` trains with.

Projection: the per-core rate of ``full`` (and ``cached``) times ``--workers``, beside the GPU's
training step rate from the preset's GFLOPs at the size (``acfd.training.info.describe``): a training
step costs about 3x the forward FLOPs (forward + backward), so images/s = MFU x TFLOP/s / (3 x GFLOPs);
printed for an MFU of 100 % (the bound) and of 30 % and 10 % (what small convolutional nets reach).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _records(data: str, images: str | None):
    from acfd.training.data.annotations import load_detection_set
    from acfd.training.data.sources import is_sources_file, load_sources, read_sources

    if is_sources_file(data):
        return load_sources(read_sources(data)).train_records()
    return load_detection_set(data, images_dir=images).records


def measure(records, preset_name: str, size: int, count: int, seed: int = 0) -> dict:
    import cv2
    import torch

    from acfd.inference.image_io import read_image
    from acfd.training.config import load_preset
    from acfd.training.data.dataset import DetectionDataset
    from acfd.training.trainer import _augment_config

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    preset = load_preset(preset_name)
    step = max(1, len(records) // count)
    picks = list(range(0, len(records), step))[:count]
    cfg = _augment_config(preset, size)
    mosaic = preset.train.mosaic_prob
    out = {"preset": preset.name, "size": size, "images": len(picks), "mosaic_prob": mosaic}

    def rate(fn) -> float:
        """Images per second of this process's CPU time (one thread: per core, whatever else the machine runs)."""
        fn(picks[0])  # warm-up (imports, first allocation)
        t0 = time.process_time()
        for i in picks:
            fn(i)
        return round(len(picks) / (time.process_time() - t0), 2)

    out["decode"] = rate(lambda i: read_image(records[i].path))
    plain = DetectionDataset(records, train=True, size=size, seed=seed, augment_config=cfg, mosaic_prob=0.0)
    out["augment"] = rate(plain.__getitem__)
    full = DetectionDataset(records, train=True, size=size, seed=seed, augment_config=cfg, mosaic_prob=mosaic)
    out["full"] = rate(full.__getitem__) if mosaic > 0 else out["augment"]
    as_bytes = DetectionDataset(
        records, train=True, size=size, seed=seed, augment_config=cfg, mosaic_prob=mosaic, uint8=True
    )
    out["uint8"] = rate(as_bytes.__getitem__)
    # decode once into memory (DetectionDataset.preload, acfd train --cache-images)
    held = full.preload(threads=1)
    out["cached"] = rate(full.__getitem__)
    full.uint8 = True  # the same decoded images, handed over as uint8
    out["uint8_cached"] = rate(full.__getitem__)
    out["cached_mb_per_image"] = round(held / len(records) / 1e6, 3)
    return out


def project(row: dict, workers: int, tflops: float) -> dict:
    from acfd.training.info import describe

    gflops = describe(row["preset"], row["size"], row["size"])["gflops"]
    step = {f"mfu_{int(m * 100)}": round(m * tflops * 1e3 / (3 * gflops), 0) for m in (1.0, 0.3, 0.1)}
    feed = {k: round(row[k] * workers, 1) for k in ("decode", "augment", "full", "uint8", "cached", "uint8_cached")}
    return {"workers": workers, "tflops": tflops, "gflops_forward": gflops, "gpu_images_per_s": step, "feed": feed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="sources YAML or one annotation file (its training records)")
    parser.add_argument("--images-dir", default=None, help="image folder of a single annotation file")
    parser.add_argument("--preset", default="mid")
    parser.add_argument("--size", type=int, nargs="+", default=[640])
    parser.add_argument("--images", type=int, default=200, help="samples timed per stage")
    parser.add_argument("--workers", type=int, default=16, help="loader processes to project for")
    parser.add_argument("--tflops", type=float, default=790.0, help="the GPU's bf16 matrix rate (H200: 790 measured)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    records = _records(args.data, args.images_dir)
    rows = []
    for size in args.size:
        row = measure(records, args.preset, size, args.images)
        row["projection"] = project(row, args.workers, args.tflops)
        rows.append(row)
        p = row["projection"]
        print(
            f"{row['preset']} at {size}: per core decode {row['decode']}, augment {row['augment']}, "
            f"full (mosaic {row['mosaic_prob']}) {row['full']}, uint8 {row['uint8']}, cached {row['cached']}, "
            f"uint8 + cached {row['uint8_cached']} images/s; x{args.workers}: full {p['feed']['full']}, "
            f"uint8 {p['feed']['uint8']}, cached {p['feed']['cached']}, uint8 + cached {p['feed']['uint8_cached']} "
            "images/s; "
            f"GPU at {p['gflops_forward']} GFLOPs: {p['gpu_images_per_s']} images/s",
            flush=True,
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"data": args.data, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
