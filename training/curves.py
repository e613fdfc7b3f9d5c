"""``RUN/metrics.csv``: its columns, an appending writer, a reader, and the loss / LR / mAP picture.

One row per logging window (``kind=iter``: means over the last N iterations) and one per epoch
(``kind=epoch``: the epoch's mean loss and, when validated, ``val_ap`` = mAP@0.5, the mean over the
hold-outs when a run has several; then ``val_ap_<source>`` columns follow ``FIELDS``, one per
hold-out). ``iteration`` is the number of optimizer steps done when the row was written. Empty cells
mean "not measured". ``elapsed_s`` counts from the start of the process that wrote the row, so a run
trained in pieces (``--pause-after``, ``--resume``) starts it again at each piece;
``training_hours`` adds the pieces up.
"""

from __future__ import annotations

import csv
from pathlib import Path

FIELDS = ("kind", "epoch", "iteration", "lr", "loss", "cls", "reg", "n1", "n2", "images_per_s", "val_ap", "elapsed_s")


class MetricsWriter:
    """Appends rows to ``metrics.csv``; on resume, drops rows written after the checkpoint's iteration."""

    def __init__(self, path: str | Path, keep_until_iteration: int | None = None, extra: tuple[str, ...] = ()):
        self.path = Path(path)
        self.fields = FIELDS + tuple(extra)
        if keep_until_iteration is None or not self.path.is_file():
            with self.path.open("w", newline="") as f:
                csv.writer(f).writerow(self.fields)
        else:
            kept = [r for r in read_metrics(self.path) if int(r["iteration"] or 0) <= keep_until_iteration]
            with self.path.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(kept)

    def write(self, **row: object) -> None:
        unknown = set(row) - set(self.fields)
        if unknown:
            raise ValueError(f"unknown metrics columns {sorted(unknown)}")
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerow([_cell(row.get(name)) for name in self.fields])


def read_metrics(path: str | Path) -> list[dict[str, str]]:
    with Path(path).open(newline="") as f:
        return list(csv.DictReader(f))


def training_hours(rows: list[dict[str, str]]) -> tuple[list[tuple[int, float]], int]:
    """``([(iteration, hours trained so far)] at each epoch end, pieces)``. A row whose ``elapsed_s``
    is below the row's before it was written by a new process (a resumed piece): the pieces before it
    add the time their last row had reached."""
    points, offset, last, pieces = [], 0.0, None, 0
    for row in rows:
        if not row.get("elapsed_s"):
            continue
        elapsed = float(row["elapsed_s"])
        if last is None or elapsed < last:
            pieces += 1
            offset += last or 0.0
        last = elapsed
        if row["kind"] == "epoch":
            points.append((int(row["iteration"]), (offset + elapsed) / 3600.0))
    return points, pieces


def plot_curves(metrics_csv: str | Path, out_png: str | Path, title: str = "") -> Path:
    """Training loss (total, cls, reg), learning rate and validation mAP@0.5 against iterations, with
    the hours trained on a second axis (a run in pieces counts each piece's own time)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_csv)
    steps = [r for r in rows if r["kind"] == "iter"]
    epochs = [r for r in rows if r["kind"] == "epoch" and r["val_ap"]]
    fig, axes = plt.subplots(3, 1, figsize=(7, 8), sharex=True)
    x = [int(r["iteration"]) for r in steps]
    for name in ("loss", "cls", "reg"):
        axes[0].plot(x, [_num(r[name]) for r in steps], label=name, linewidth=1)
    axes[0].set_ylabel("training loss")
    axes[0].legend(loc="upper right")
    axes[0].grid(alpha=0.3)
    axes[1].plot(x, [_num(r["lr"]) for r in steps], color="tab:purple", linewidth=1)
    axes[1].set_ylabel("learning rate")
    axes[1].grid(alpha=0.3)
    if epochs:
        at = [int(r["iteration"]) for r in epochs]
        sources = [k for k in epochs[0] if k and k.startswith("val_ap_")]
        for key in sources:
            axes[2].plot(at, [100 * _num(r.get(key) or "") for r in epochs], marker=".", linewidth=1, label=key[7:])
        label = "mean over hold-outs" if sources else None
        axes[2].plot(at, [100 * _num(r["val_ap"]) for r in epochs], marker="o", color="tab:green", label=label)
        if sources:
            axes[2].legend(loc="best", fontsize=8)
    else:
        axes[2].text(0.5, 0.5, "no validation set", ha="center", va="center", transform=axes[2].transAxes)
    axes[2].set_ylabel("val mAP@0.5 (%)")
    axes[2].set_xlabel("iteration")
    axes[2].grid(alpha=0.3)
    hours, pieces = training_hours(rows)
    if hours:
        import numpy as np

        at = np.array([0.0] + [float(i) for i, _ in hours])
        h = np.array([0.0] + [float(t) for _, t in hours])
        top = axes[0].secondary_xaxis(
            "top", functions=(lambda x: np.interp(x, at, h), lambda y: np.interp(y, h, at))
        )  # fmt: skip
        top.set_xlabel("hours trained")
        done = f"{h[-1]:.2f} h of training" + (f" in {pieces} pieces" if pieces > 1 else "")
        title = f"{title} ({done})" if title else done
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _num(text: str) -> float:
    return float(text) if text not in ("", None) else float("nan")
