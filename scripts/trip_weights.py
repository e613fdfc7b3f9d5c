#!/usr/bin/env python3
"""Weights across the device's return limits (at most 8 files of 16 MiB): split there, restore here bit-exact.

    python scripts/trip_weights.py split FILE OUT_DIR [--part-mib 15.5]   # on the device: FILE.partNN + FILE.json
    python scripts/trip_weights.py restore DIR OUT                         # here: joins the parts, checks SHA-256

``split`` writes ``NAME.part00``, ``NAME.part01``, ... (each at most ``--part-mib``) and ``NAME.json``
(name, size, SHA-256 of the whole file and of each part). ``restore`` reads that JSON in DIR, checks
each part and the joined whole against it, and writes OUT only when every byte matches (exit 0); a
missing or altered part is one line naming it (exit 1). Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

LIMIT = 16 * 2**20


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def split(path: Path, out_dir: Path, part_bytes: int) -> dict:
    if not 0 < part_bytes <= LIMIT:
        raise ValueError(f"--part-mib: a part must be 1 byte to 16 MiB, got {part_bytes} bytes")
    data = path.read_bytes()
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = []
    for k, start in enumerate(range(0, max(len(data), 1), part_bytes)):
        chunk = data[start : start + part_bytes]
        name = f"{path.name}.part{k:02d}"
        (out_dir / name).write_bytes(chunk)
        parts.append({"name": name, "bytes": len(chunk), "sha256": _sha(chunk)})
    index = {"name": path.name, "bytes": len(data), "sha256": _sha(data), "parts": parts}
    (out_dir / f"{path.name}.json").write_text(json.dumps(index, indent=1) + "\n")
    return index


def restore(folder: Path, out: Path) -> dict:
    indexes = [p for p in folder.glob("*.json") if (folder / f"{p.stem}.part00").exists()]
    if len(indexes) != 1:
        raise ValueError(f"{folder}: expected one NAME.json beside NAME.part00, found {len(indexes)}")
    index = json.loads(indexes[0].read_text())
    chunks = []
    for part in index["parts"]:
        p = folder / part["name"]
        if not p.is_file():
            raise ValueError(f"{p}: missing part")
        chunk = p.read_bytes()
        if len(chunk) != part["bytes"] or _sha(chunk) != part["sha256"]:
            raise ValueError(f"{p}: altered ({len(chunk)} bytes, expected {part['bytes']} with its SHA-256)")
        chunks.append(chunk)
    data = b"".join(chunks)
    if len(data) != index["bytes"] or _sha(data) != index["sha256"]:
        raise ValueError(f"{folder}: the joined parts do not match {index['name']}'s SHA-256")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("split")
    s.add_argument("file")
    s.add_argument("out_dir")
    s.add_argument("--part-mib", type=float, default=15.5)
    r = sub.add_parser("restore")
    r.add_argument("dir")
    r.add_argument("out")
    args = parser.parse_args(argv)
    try:
        if args.command == "split":
            index = split(Path(args.file), Path(args.out_dir), int(args.part_mib * 2**20))
            print(f"{index['name']}: {index['bytes']} bytes in {len(index['parts'])} part(s), sha256 {index['sha256']}")
        else:
            index = restore(Path(args.dir), Path(args.out))
            print(f"{args.out}: {index['bytes']} bytes restored, sha256 {index['sha256']} matches")
    except (OSError, ValueError) as err:
        print(f"trip_weights: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
