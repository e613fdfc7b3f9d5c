#!/usr/bin/env python3
"""Split an iCartoonFace detection CSV into train / hold-out CSVs by a seeded hash of the image name.

    python scripts/split_holdout.py CSV OUT_DIR [--fraction 0.1] [--seed 0]

An image goes to the hold-out when ``int(sha256(f"{seed}:{image_name}")[:16], 16) / 16**16 < fraction``.
The choice depends on the file name alone (not on line order or on which other images exist), so
the same image is always held out, and all faces of an image stay on one side. Writes
``OUT_DIR/train.csv`` and ``OUT_DIR/val.csv`` (the input lines, unchanged, in input order) and
``OUT_DIR/val_images.txt`` (the held-out names, sorted). Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path


def held_out(name: str, fraction: float, seed: int) -> bool:
    digest = hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()
    return int(digest[:16], 16) / 16**16 < fraction


def split(csv_path: Path, out_dir: Path, fraction: float, seed: int) -> tuple[int, int]:
    """Write the two CSVs; returns the number of (train, hold-out) images."""
    lines = [ln for ln in csv_path.read_text().splitlines() if ln.strip()]
    train_lines, val_lines, train_names, val_names = [], [], set(), set()
    for line in lines:
        name = line.split(",", 1)[0].strip()
        if held_out(name, fraction, seed):
            val_lines.append(line)
            val_names.add(name)
        else:
            train_lines.append(line)
            train_names.add(name)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "train.csv").write_text("\n".join(train_lines) + "\n")
    (out_dir / "val.csv").write_text("\n".join(val_lines) + "\n")
    (out_dir / "val_images.txt").write_text("\n".join(sorted(val_names)) + "\n")
    return len(train_names), len(val_names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", type=Path, help="iCartoonFace detection CSV (image_name,x1,y1,x2,y2[,face])")
    parser.add_argument("out_dir", type=Path, help="folder for train.csv, val.csv and val_images.txt")
    parser.add_argument("--fraction", type=float, default=0.1, help="share of images held out (default 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="hash seed (default 0)")
    args = parser.parse_args(argv)
    if not args.csv.is_file():
        print(f"split_holdout: {args.csv}: no such file", file=sys.stderr)
        return 2
    if not 0.0 < args.fraction < 1.0:
        print(f"split_holdout: --fraction {args.fraction}: must be between 0 and 1", file=sys.stderr)
        return 2
    n_train, n_val = split(args.csv, args.out_dir, args.fraction, args.seed)
    print(f"{args.csv}: {n_train} training images, {n_val} held out ({args.out_dir}/val.csv)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
