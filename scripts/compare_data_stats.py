"""Real vs generated face statistics, side by side, as one PNG (docs/data_stats.png).

    .venv/bin/python scripts/compare_data_stats.py \
        --real ../shared/data/icartoonface_train/icartoonface_dettrain.csv \
        --generate 500 --seed 0 --out docs/data_stats.png

``--synth DIR`` uses an existing generated set instead of generating one (``--generate N`` writes N
scenes to a temporary folder with ``acfd synth``'s defaults). Four panels: face side ``sqrt(w*h)`` in
pixels, face side over image height (the scale-free comparison, since real frames are ~900x500 and
generated ones 640x384 by default), box aspect ratio ``w/h``, and faces per image. Only statistics
of the real set are drawn; no real image or box is written.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from acfd.training.data.annotations import DetectionSet, load_detection_set  # noqa: E402
from acfd.scenes.synth import write_dataset  # noqa: E402


def face_stats(ds: DetectionSet) -> dict[str, np.ndarray]:
    side, rel, aspect = [], [], []
    for r in ds.records:
        w, h = r.boxes[:, 2] - r.boxes[:, 0], r.boxes[:, 3] - r.boxes[:, 1]
        side.append(np.sqrt(w * h))
        rel.append(np.sqrt(w * h) / r.height)
        aspect.append(w / h)
    cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0)  # noqa: E731
    return {
        "side": cat(side),
        "rel": cat(rel),
        "aspect": cat(aspect),
        "per_image": np.array([len(r.boxes) for r in ds.records]),
    }


def plot(real: dict, synth: dict, labels: tuple[str, str], out: Path) -> None:
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    panels = [
        ("side", "face side sqrt(w*h), pixels", np.geomspace(8, 1024, 22), True),
        ("rel", "face side / image height", np.geomspace(0.01, 2.0, 22), True),
        ("aspect", "aspect ratio w/h", np.geomspace(0.2, 5.0, 22), True),
        ("per_image", "faces per image", np.arange(0, 37) - 0.5, False),
    ]
    for ax, (key, title, bins, log) in zip(axes.ravel(), panels):
        for stats, label, color in ((real, labels[0], "tab:blue"), (synth, labels[1], "tab:orange")):
            values = np.clip(stats[key], bins[0], bins[-1])
            weights = np.full(len(values), 100.0 / max(len(values), 1))
            ax.hist(
                values,
                bins=bins,
                weights=weights,
                histtype="step",
                linewidth=2,
                color=color,
                label=f"{label} (n={len(values)}, median {np.median(values) if len(values) else 0:.3g})",
            )
        if log:
            ax.set_xscale("log")
        if key == "aspect":
            ax.set_xticks([0.25, 1 / 3, 0.5, 1, 2, 3, 4], ["1/4", "1/3", "1/2", "1", "2", "3", "4"])
            ax.minorticks_off()
            for x in (1 / 3, 0.5, 2, 3):
                ax.axvline(x, color="grey", linestyle=":", linewidth=1)
        ax.set_title(title)
        ax.set_ylabel("% of " + ("images" if key == "per_image" else "faces"))
        ax.legend(fontsize=8)
    share = lambda a: 100.0 * np.mean((a > 2) | (a < 0.5)) if len(a) else 0.0  # noqa: E731
    fig.suptitle(
        f"Real vs generated faces. Aspect beyond 2 or 1/2: real {share(real['aspect']):.1f}%, "
        f"generated {share(synth['aspect']):.1f}%"
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--real", required=True, help="real annotations (iCartoonFace CSV, COCO JSON or folder)")
    parser.add_argument("--synth", default=None, help="an existing generated set (folder)")
    parser.add_argument("--generate", type=int, default=500, help="scenes to generate when --synth is not given")
    parser.add_argument("--seed", type=int, default=0, help="seed for --generate")
    parser.add_argument("--out", default="docs/data_stats.png", help="PNG to write")
    args = parser.parse_args(argv)
    try:
        real = load_detection_set(args.real)
        if args.synth:
            synth = load_detection_set(args.synth)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                write_dataset(tmp, args.generate, args.seed)
                synth = load_detection_set(tmp)
    except (FileNotFoundError, ValueError) as err:
        print(f"compare_data_stats: {err}", file=sys.stderr)
        return 2
    plot(face_stats(real), face_stats(synth), ("real iCartoonFace", "generated"), Path(args.out))
    print(
        f"wrote {args.out}: real {real.images} images / {real.faces} faces, "
        f"generated {synth.images} images / {synth.faces} faces"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
