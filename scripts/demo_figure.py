"""Turn an ``acfd demo`` output folder into one PNG contact sheet (the README's docs/demo.png).

    .venv/bin/python scripts/demo_figure.py acfd-demo docs/demo.png [--max 6] [--columns 3]

Reads ``DIR/summary.json`` (image order, faces, server latency) and the annotated images it names
(``DIR/images/...``); images that failed in the demo are left out. Without a summary the PNGs under
``DIR/images`` are used, in name order, without captions. A folder that is not a demo output, or no
images, prints one line on stderr and exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


def sheet_entries(demo_dir: Path, limit: int) -> tuple[list[tuple[Path, str]], str]:
    """``[(annotated image, caption)]`` (at most ``limit``) and a title, from a demo folder."""
    summary_path = demo_dir / "summary.json"
    if summary_path.is_file():
        try:
            summary = json.loads(summary_path.read_text())
            rows = [r for r in summary["images"] if r.get("annotated")]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{summary_path}: not a readable demo summary ({err})") from None
        entries = [
            (demo_dir / r["annotated"], f"{Path(r['name']).stem}: {r['faces']} faces, {r['server_ms']:.0f} ms")
            for r in rows
        ]
        latency = summary.get("latency", {})
        title = f"acfd demo, preset {summary.get('preset', '?')}: faces scoring >= {summary.get('min_score', 0):g}"
        if latency.get("server_mean_ms") is not None:
            title += f"; mean latency {latency['server_mean_ms']:.0f} ms through Triton Inference Server"
    elif (demo_dir / "images").is_dir():
        entries = [(p, "") for p in sorted((demo_dir / "images").rglob("*.png"))]
        title = "acfd demo"
    else:
        raise ValueError(f"{demo_dir}: not an `acfd demo` output folder (no summary.json or images/)")
    if not entries:
        raise ValueError(f"{demo_dir}: the demo wrote no annotated images")
    return entries[:limit], title


def draw_sheet(entries: list[tuple[Path, str]], title: str, out: Path, columns: int) -> Path:
    """Lay the images out on a grid, ``columns`` wide, and save the sheet as ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = []
    for path, caption in entries:
        try:
            images.append((plt.imread(path), caption))
        except (OSError, ValueError, SyntaxError) as err:
            raise ValueError(f"{path}: cannot read the annotated image ({err})") from None
    columns = max(1, min(columns, len(images)))
    rows = math.ceil(len(images) / columns)
    aspect = max(img.shape[0] / img.shape[1] for img, _ in images)  # tallest cell sets the row height
    cell_w = 5.0
    fig, axes = plt.subplots(
        rows, columns, figsize=(cell_w * columns, (cell_w * aspect + 0.4) * rows + 0.5), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    for ax, (img, caption) in zip(axes.flat, images):
        ax.imshow(img)
        ax.set_title(caption, fontsize=10)
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("demo_dir", type=Path, metavar="DIR", help="output folder of `acfd demo`")
    parser.add_argument("out", type=Path, metavar="OUT.png", help="contact sheet to write")
    parser.add_argument("--max", type=int, default=6, help="at most this many images")
    parser.add_argument("--columns", type=int, default=3, help="images per row")
    args = parser.parse_args(argv)
    if args.max < 1 or args.columns < 1:
        print(f"demo_figure: --max and --columns must be >= 1, got {args.max} and {args.columns}", file=sys.stderr)
        return 1
    try:
        entries, title = sheet_entries(args.demo_dir, args.max)
        path = draw_sheet(entries, title, args.out, args.columns)
    except ValueError as err:
        print(f"demo_figure: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"demo_figure: {err.filename or args.out}: {err.strerror or err}", file=sys.stderr)
        return 1
    print(f"wrote {path} ({len(entries)} images)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
