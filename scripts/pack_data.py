#!/usr/bin/env python3
"""Pack a training set to travel: re-encoded images, rewritten annotations, a manifest, a size budget.

    python scripts/pack_data.py SRC OUT [--codec webp|jpeg] [--quality 80] [--max-side 640]
                                [--budget-mib auto|N] [--with-val] [--every K] [--jobs J] [--measure]

``SRC`` is a sources YAML (``acfd.training.data.sources``: its sources' ``train`` parts, and their
``val`` parts with ``--with-val``) or one annotation file (any format ``load_detection_set`` reads;
``--images`` names its image folder). ``OUT`` must be new or empty; it gets, per source,
``NAME/images/*.webp|jpg``, ``NAME/train.json`` (and ``NAME/val.json``) in COCO with the boxes and
ignore regions scaled to the re-encoded image (``iscrowd: 1`` for ignore regions), plus
``sources.yaml`` (relative paths: ``acfd train --data OUT/sources.yaml`` reads it wherever OUT is
copied to) and ``manifest.json`` (settings, per-source images / faces / bytes, the originals' bytes).

``--max-side N`` shrinks an image whose long side exceeds N (INTER_AREA), never enlarges it.
``--every K`` packs every K-th image of each part only (a sample, for measuring). ``--measure`` encodes
in memory, writes nothing, and prints the manifest (with ``--every``: the totals extrapolated).

The budget (MiB of everything written) is checked as images are written: the first image that would
exceed it stops the packer, which removes what it wrote and prints one line with the size it
would have reached (extrapolated). ``auto`` (the default): 64 MiB, what one device call carries,
less the checkout's tree that travels with it (``git ls-files -co --exclude-standard`` of the
repository holding OUT) and 1 MiB of headroom. Exit status: 0 packed, 1 over budget, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CARRY_LIMIT = 64 * 2**20  # bytes one device call carries: the tree and the carried paths together
HEADROOM = 2**20
CODECS = {"webp": ".webp", "jpeg": ".jpg"}


class PackError(Exception):
    """A problem the packer reports in one line (exit 2)."""


class OverBudget(Exception):
    """The packed set would exceed the budget (exit 1)."""


def tree_bytes(folder: Path) -> int:
    """Bytes of the files that travel from the git checkout holding ``folder`` (tracked + untracked not ignored)."""
    top = subprocess.run(
        ["git", "-C", str(folder), "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=False
    )
    if top.returncode != 0:
        raise PackError(f"--budget-mib auto: {folder} is not inside a git checkout; give the budget in MiB")
    root = Path(top.stdout.strip())
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "-co", "--exclude-standard"], capture_output=True, check=True
    ).stdout
    total = 0
    for name in listed.decode().split("\0"):
        p = root / name
        if name and p.is_file() and not p.is_symlink():
            total += p.stat().st_size
    return total


def resolve_budget(value: str, out: Path) -> tuple[int, dict]:
    if value == "auto":
        probe = out if out.exists() else out.parent
        while not probe.exists():
            probe = probe.parent
        tree = tree_bytes(probe)
        budget = CARRY_LIMIT - tree - HEADROOM
        if budget <= 0:
            raise PackError(f"--budget-mib auto: the tree alone is {tree / 2**20:.1f} MiB, no room left for data")
        return budget, {"rule": "64 MiB - tree - 1 MiB", "tree_bytes": tree}
    try:
        mib = float(value)
    except ValueError:
        raise PackError(f"--budget-mib: expected 'auto' or a number of MiB, got {value!r}") from None
    if not math.isfinite(mib) or mib <= 0:
        raise PackError(f"--budget-mib: expected a positive number of MiB, got {value!r}")
    return int(mib * 2**20), {"rule": "given"}


def load_parts(src: str, images: str | None, fmt: str | None, with_val: bool) -> list[tuple[str, str, object]]:
    """``[(source name, 'train'|'val', DetectionSet)]`` to pack."""
    from acfd.training.data.annotations import load_detection_set
    from acfd.training.data.sources import SourceError, is_sources_file, load_sources, read_sources

    path = Path(src)
    if not path.exists():
        raise PackError(f"{src}: no such file or folder")
    try:
        if is_sources_file(path):
            if images or fmt:
                raise PackError(f"{src} is a sources file: give images/format in it, not --images/--format")
            sources = read_sources(path)
            loaded = load_sources(sources)
            parts = [(s.name, "train", loaded.train[i]) for i, s in enumerate(sources) if loaded.train[i] is not None]
            if with_val:
                parts += [(s.name, "val", loaded.val[i]) for i, s in enumerate(sources) if loaded.val[i] is not None]
            return parts
        ds = load_detection_set(path, images_dir=images, format=fmt, split="train")
    except SourceError as err:
        raise PackError(str(err)) from None
    except (OSError, ValueError) as err:
        raise PackError(f"{src}: {err}") from None
    if not ds.records:
        raise PackError(f"{src}: no usable images with annotations")
    if with_val:
        raise PackError("--with-val needs a sources YAML (one annotation file has no hold-out)")
    return [(path.stem if path.is_file() else path.name, "train", ds)]


def encode(job: tuple[str, str, int, int | None]) -> tuple[bytes, int, int, int, int, int]:
    """Re-encode one image: ``(data, width, height, new width, new height, original bytes)``."""
    import cv2

    from acfd.inference.image_io import read_image

    path, codec, quality, max_side = job
    image = read_image(path)
    h, w = image.shape[:2]
    nw, nh = w, h
    if max_side and max(w, h) > max_side:
        s = max_side / max(w, h)
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    flag = cv2.IMWRITE_WEBP_QUALITY if codec == "webp" else cv2.IMWRITE_JPEG_QUALITY
    ok, buf = cv2.imencode(CODECS[codec], cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [flag, int(quality)])
    if not ok:
        raise PackError(f"{path}: cv2 could not encode it as {codec}")
    return buf.tobytes(), w, h, nw, nh, os.path.getsize(path)


def _round(v: float) -> float | int:
    r = round(float(v), 4)
    return int(r) if r == int(r) else r


def coco_of(records: list, names: list[str], sizes: dict) -> dict:
    """COCO of ``records`` under new ``names`` with boxes scaled to ``sizes[path] = (w, h, nw, nh)``."""
    images, anns = [], []
    for i, (rec, name) in enumerate(zip(records, names), 1):
        w, h, nw, nh = sizes[str(rec.path)]
        sx, sy = nw / w, nh / h
        images.append({"id": i, "file_name": name, "width": nw, "height": nh})
        for crowd, boxes in ((0, rec.boxes), (1, rec.ignore)):
            for x1, y1, x2, y2 in boxes.reshape(-1, 4).tolist():
                x1, y1, x2, y2 = x1 * sx, y1 * sy, x2 * sx, y2 * sy
                anns.append(
                    {
                        "id": len(anns) + 1,
                        "image_id": i,
                        "category_id": 1,
                        "bbox": [_round(x1), _round(y1), _round(x2 - x1), _round(y2 - y1)],
                        "area": _round((x2 - x1) * (y2 - y1)),
                        "iscrowd": crowd,
                    }
                )
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "face"}]}


def pack(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    if not args.measure and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PackError(f"{out}: exists and is not an empty folder (the packer writes a new one)")
    if args.codec not in CODECS:
        raise PackError(f"--codec: {args.codec!r} is not one of {', '.join(CODECS)}")
    if not 1 <= args.quality <= 100:
        raise PackError(f"--quality: expected 1..100, got {args.quality}")
    if args.max_side is not None and args.max_side < 32:
        raise PackError(f"--max-side: expected at least 32, got {args.max_side}")
    if args.every < 1:
        raise PackError(f"--every: expected at least 1, got {args.every}")
    if not Path(args.src).exists():
        raise PackError(f"{args.src}: no such file or folder")
    budget, budget_info = resolve_budget(args.budget_mib, out)
    parts = load_parts(args.src, args.images, args.format, args.with_val)
    # Each source's images once (train and val of a source may share a folder), in part order.
    plan: dict[str, list] = {}  # source -> [(part, records sampled)]
    for name, split, ds in parts:
        plan.setdefault(name, []).append((split, ds.records[:: args.every]))
    jobs, dest = [], {}
    for name, splits in plan.items():
        taken: set[str] = set()
        for _, records in splits:
            for rec in records:
                key = str(rec.path)
                if key in dest:
                    continue
                stem = Path(key).stem
                fname = stem + CODECS[args.codec]
                k = 1
                while fname in taken:
                    k += 1
                    fname = f"{stem}_{k}{CODECS[args.codec]}"
                taken.add(fname)
                dest[key] = (name, fname)
                jobs.append((key, args.codec, args.quality, args.max_side))
    total_images = sum(len(ds.records) for _, _, ds in parts)
    written = 0
    sizes: dict[str, tuple[int, int, int, int]] = {}
    per_source = {
        n: {"images": 0, "bytes": 0, "original_bytes": 0, "faces": 0, "parts": [s for s, _ in sp]}
        for n, sp in plan.items()
    }
    created = not args.measure
    if created:
        out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    try:
        with ProcessPoolExecutor(max_workers=args.jobs) if args.jobs > 1 else _Serial() as pool:
            for done, (job, result) in enumerate(zip(jobs, pool.map(encode, jobs, chunksize=8)), 1):
                data, w, h, nw, nh, orig = result
                name, fname = dest[job[0]]
                sizes[job[0]] = (w, h, nw, nh)
                written += len(data)
                ps = per_source[name]
                ps["images"] += 1
                ps["bytes"] += len(data)
                ps["original_bytes"] += orig
                if not args.measure:
                    if written > budget:
                        est = written * len(jobs) / done
                        raise OverBudget(
                            f"pack_data: over the budget of {budget / 2**20:.1f} MiB after {done}/{len(jobs)} images "
                            f"({written / 2**20:.1f} MiB; the whole set would be about {est / 2**20:.1f} MiB at "
                            f"{args.codec} q{args.quality} max side {args.max_side or 'none'}): nothing written; "
                            "try a lower --quality, a --max-side, or fewer sources"
                        )
                    target = out / name / "images" / fname
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(data)
        sources_yaml = ["# written by scripts/pack_data.py", "sources:"]
        annotations = 0
        for name, splits in plan.items():
            entry = {"name": name}
            for split, records in splits:
                names = [dest[str(r.path)][1] for r in records]
                coco = coco_of(records, names, sizes)
                if split == "train":
                    per_source[name]["faces"] = sum(len(r.boxes) for r in records)
                text = json.dumps(coco, separators=(",", ":"))
                annotations += len(text)
                if not args.measure:
                    (out / name / f"{split}.json").write_text(text)
                entry[split] = f"{name}/{split}.json"
            entry["images"] = f"{name}/images"
            sources_yaml.append("  - " + json.dumps(entry))  # JSON flow mappings are YAML
        written += annotations
        if not args.measure and written > budget:
            raise OverBudget(
                f"pack_data: over the budget of {budget / 2**20:.1f} MiB with the annotations "
                f"({written / 2**20:.1f} MiB): nothing written; try a lower --quality or a --max-side"
            )
        manifest = {
            "src": str(args.src),
            "codec": args.codec,
            "quality": args.quality,
            "max_side": args.max_side,
            "every": args.every,
            "with_val": args.with_val,
            "images": len(jobs),
            "images_listed": total_images,
            "bytes": written,
            "mib": round(written / 2**20, 2),
            "annotation_bytes": annotations,
            "original_bytes": sum(p["original_bytes"] for p in per_source.values()),
            "budget_bytes": budget,
            "budget": budget_info,
            "seconds": round(time.time() - started, 1),
            "sources": per_source,
        }
        if args.every > 1:
            manifest["estimated_full_mib"] = round(
                sum(p["bytes"] for p in per_source.values()) * args.every / 2**20 + annotations * args.every / 2**20,
                1,
            )
        if not args.measure:
            (out / "sources.yaml").write_text("\n".join(sources_yaml) + "\n")
            (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        return manifest
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise


class _Serial:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, fn, items, chunksize=1):
        return map(fn, items)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", help="sources YAML or one annotation file")
    parser.add_argument("out", help="new or empty folder to write (e.g. travel/data, git-ignored)")
    parser.add_argument("--images", help="image folder of a single annotation file")
    parser.add_argument("--format", help="annotation format of a single annotation file")
    parser.add_argument("--codec", default="webp", help="webp or jpeg (default: webp)")
    parser.add_argument("--quality", type=int, default=80, help="encoder quality 1..100 (default: 80)")
    parser.add_argument("--max-side", type=int, default=None, help="shrink images whose long side exceeds this")
    parser.add_argument("--budget-mib", default="auto", help="MiB the packed set may take, or auto (default)")
    parser.add_argument("--with-val", action="store_true", help="also pack each source's hold-out (val)")
    parser.add_argument("--every", type=int, default=1, help="pack every K-th image only (a sample)")
    parser.add_argument("--jobs", type=int, default=1, help="encoding processes (default: 1)")
    parser.add_argument("--measure", action="store_true", help="encode in memory, write nothing, print sizes")
    args = parser.parse_args(argv)
    try:
        manifest = pack(args)
    except PackError as err:
        print(f"pack_data: {err}", file=sys.stderr)
        return 2
    except OverBudget as err:
        print(str(err), file=sys.stderr)
        return 1
    except Exception as err:  # an unreadable image and the like: one line, not a traceback
        from acfd.inference.image_io import ImageError

        if isinstance(err, (ImageError, OSError)):
            print(f"pack_data: {err}", file=sys.stderr)
            return 2
        raise
    print(json.dumps({k: v for k, v in manifest.items() if k != "sources"}))
    for name, p in manifest["sources"].items():
        print(
            f"  {name}: {p['images']} images, {p['faces']} training faces, {p['bytes'] / 2**20:.1f} MiB "
            f"(originals {p['original_bytes'] / 2**20:.1f} MiB)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
