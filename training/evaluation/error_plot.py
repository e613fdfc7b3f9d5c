"""The error breakdown of :mod:`acfd.training.evaluation.errors` as a PNG (matplotlib, headless Agg backend):
one panel per row ("all", size bins, ...), a horizontal bar of dAP (in AP points) per error type and for the
two special oracles; undefined rows (no faces) show a note instead of bars. Rows named ``"source: row"``
are laid out one source per line of panels."""

from __future__ import annotations

import math
from pathlib import Path

from acfd.training.evaluation.errors import ERROR_TYPES, ErrorBreakdown

_COLOURS = {
    "missed": "tab:red",
    "localisation": "tab:orange",
    "duplicate": "tab:purple",
    "background": "tab:brown",
    "FP": "0.45",
    "FN": "0.7",
}


def plot_error_breakdown(rows: dict[str, ErrorBreakdown], path: str | Path, title: str = "ACFD") -> Path:
    """Write one panel of dAP bars per row of ``rows`` to ``path``; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    path = Path(path)
    groups: dict[str, list[str]] = {}
    for name in rows:
        groups.setdefault(name.split(": ")[0] if ": " in name else "", []).append(name)
    n_rows, n_cols = max(len(groups), 1), max([len(g) for g in groups.values()] or [1])
    fig, grid = plt.subplots(
        n_rows, n_cols, figsize=(3.2 * n_cols + 0.8, 3.0 * n_rows + 0.4), dpi=120, sharex=True, squeeze=False
    )
    place = {name: grid[i][j] for i, g in enumerate(groups.values()) for j, name in enumerate(g)}
    for ax in grid.flat:
        if ax not in place.values():
            ax.set_visible(False)
    axes = [[place[name] for name in rows]] if rows else [[grid[0][0]]]
    if not rows:
        grid[0][0].set_visible(True)
    labels = [*ERROR_TYPES, "FP", "FN"]
    try:
        finite = [abs(v) for r in rows.values() for v in (*r.dap.values(), r.fp_dap, r.fn_dap) if math.isfinite(v)] or [
            0.0
        ]
        limit = max(1.0, 100 * max(finite) * 1.15)
        for ax, (name, r) in zip(axes[0], rows.items()):
            values = [r.dap.get(k, math.nan) for k in ERROR_TYPES] + [r.fp_dap, r.fn_dap]
            if math.isfinite(r.ap):
                ax.barh(labels, [100 * v for v in values], color=[_COLOURS[k] for k in labels])
                for y, v in enumerate(values):
                    ax.text(100 * v, y, f" {100 * v:.1f}", va="center", fontsize=7)
                ax.set_title(f"{name}: AP {100 * r.ap:.1f} ({r.faces} faces)", fontsize=9)
            else:
                ax.set_yticks(range(len(labels)), labels)
                ax.text(0.5, 0.5, "no faces", ha="center", va="center", transform=ax.transAxes)
                ax.set_title(f"{name}: AP undefined", fontsize=9)
            ax.invert_yaxis()
            ax.set_xlim(min(0.0, -limit * 0.1), limit)
            ax.set_xlabel("dAP (AP points)")
            ax.grid(True, axis="x", alpha=0.3)
        if not rows:
            axes[0][0].text(0.5, 0.5, "no rows", ha="center", va="center", transform=axes[0][0].transAxes)
        fig.suptitle(f"{title}: AP@0.5 error breakdown (TIDE)", fontsize=10)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path
