"""Precision-recall curve as a PNG (matplotlib, headless Agg backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_pr_curve(precision: np.ndarray, recall: np.ndarray, ap: float, path: str | Path, title: str = "ACFD") -> Path:
    """Write the raw precision-recall curve and its all-point envelope (whose area is AP) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    path = Path(path)
    precision = np.asarray(precision, dtype=np.float64)
    recall = np.asarray(recall, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(5.5, 4.5), dpi=120)
    try:
        if precision.size:
            rec = np.concatenate([[0.0], recall, [recall[-1]]])
            envelope = np.maximum.accumulate(np.concatenate([[0.0], precision, [0.0]])[::-1])[::-1]
            ax.plot(recall, precision, color="0.6", linewidth=1.0, label="precision")
            ax.step(rec, envelope, where="pre", color="tab:blue", linewidth=1.8, label="interpolated (AP area)")
            ax.fill_between(rec, envelope, step="pre", alpha=0.15, color="tab:blue")
        else:
            ax.text(0.5, 0.5, "no detections", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlim(0.0, 1.0)
        ax.set_ylim(0.0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(f"{title}: AP@0.5 = {ap:.4f}" if np.isfinite(ap) else f"{title}: AP@0.5 undefined")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower left")
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path
