"""The load test's outputs: ``results.csv``, a throughput/latency plot, ``summary.json`` and a
one-screen text summary.

Contract:

* ``write_results_csv(path, levels)``: one row per concurrency level with columns ``concurrency,
  infer_per_s, p50_ms, p90_ms, p95_ms, p99_ms, avg_ms, server_queue_ms, server_compute_ms``, then
  one ``<model>_ms`` column per composing model of the ensemble (its average server request
  latency), then ``requests, stable``.
* ``plot_sweep(path, levels, eager)``: a PNG with throughput (and the eager PyTorch throughput as a
  reference line) and p50/p95/p99 latency against concurrency.
* ``EagerResult`` is the in-process PyTorch measurement; ``server_over_eager`` is the ratio of the
  best server throughput to it.
* ``summary_lines(...)`` / ``write_summary_json(...)``: the same facts for people and for tools.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from acfd.clients.perf_analyzer import LevelResult

BASE_COLUMNS = (
    "concurrency", "infer_per_s", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "avg_ms",
    "server_queue_ms", "server_compute_ms",
)  # fmt: skip


@dataclass(frozen=True)
class EagerResult:
    """The same images through the in-process PyTorch model, one at a time, in a loop."""

    images: int  # inferences timed
    seconds: float
    checkpoint: str
    preset: str
    form: str  # "fused" (deploy form) or "train"
    scales: list[list[int]]
    threads: int

    @property
    def throughput(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    @property
    def mean_ms(self) -> float:
        return 1000.0 * self.seconds / self.images if self.images else 0.0


def composing_models(levels: Sequence[LevelResult]) -> list[str]:
    """Composing model names in first-seen order."""
    names: list[str] = []
    for level in levels:
        names.extend(name for name in level.composing_ms if name not in names)
    return names


def best_level(levels: Sequence[LevelResult]) -> LevelResult:
    return max(levels, key=lambda level: level.throughput)


def server_over_eager(levels: Sequence[LevelResult], eager: EagerResult | None) -> float | None:
    if not levels or eager is None or eager.throughput <= 0:
        return None
    return best_level(levels).throughput / eager.throughput


def write_results_csv(path: str | Path, levels: Sequence[LevelResult]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    models = composing_models(levels)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*BASE_COLUMNS, *(f"{m}_ms" for m in models), "requests", "stable"])
        for lv in levels:
            writer.writerow(
                [
                    lv.concurrency,
                    f"{lv.throughput:.3f}",
                    *(f"{v:.3f}" for v in (lv.p50_ms, lv.p90_ms, lv.p95_ms, lv.p99_ms, lv.avg_ms)),
                    f"{lv.server_queue_ms:.3f}",
                    f"{lv.server_compute_ms:.3f}",
                    *(f"{lv.composing_ms[m]:.3f}" if m in lv.composing_ms else "" for m in models),
                    lv.requests,
                    "yes" if lv.stable else "no",
                ]
            )
    return path


def plot_sweep(
    path: str | Path, levels: Sequence[LevelResult], eager: EagerResult | None = None, title: str = ""
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conc = [lv.concurrency for lv in levels]
    fig, (ax_t, ax_l) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax_t.plot(conc, [lv.throughput for lv in levels], "o-", color="tab:blue", label="Triton server (perf_analyzer)")
    if eager is not None and eager.throughput > 0:
        ax_t.axhline(
            eager.throughput, color="tab:gray", ls="--", label=f"eager PyTorch, in process ({eager.throughput:.2f}/s)"
        )
    ax_t.set_xlabel("concurrent requests")
    ax_t.set_ylabel("images / s")
    ax_t.set_title("throughput")
    ax_t.set_ylim(bottom=0)
    ax_t.legend(fontsize=8, loc="best")
    for key, style in (("p50_ms", "o-"), ("p95_ms", "s--"), ("p99_ms", "^:")):
        ax_l.plot(conc, [getattr(lv, key) for lv in levels], style, label=key.replace("_ms", ""))
    ax_l.set_xlabel("concurrent requests")
    ax_l.set_ylabel("latency (ms)")
    ax_l.set_title("client latency")
    ax_l.set_ylim(bottom=0)
    ax_l.legend(fontsize=8, loc="upper left")
    for ax in (ax_t, ax_l):
        ax.set_xticks(conc)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def summary_lines(
    levels: Sequence[LevelResult],
    eager: EagerResult | None,
    failed_requests: int | None,
    header: str = "",
    eager_note: str = "",
) -> list[str]:
    """A one-screen text summary: the sweep table, failures, and the server/eager ratio."""
    models = composing_models(levels)
    lines = [header] if header else []
    head = f"{'conc':>4} {'infer/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}"
    head += "".join(f" {m[:11] + ' ms':>14}" for m in models)
    lines.append(head)
    for lv in levels:
        row = f"{lv.concurrency:>4} {lv.throughput:>8.2f} {lv.p50_ms:>8.1f} {lv.p95_ms:>8.1f} {lv.p99_ms:>8.1f}"
        row += "".join(f" {lv.composing_ms.get(m, float('nan')):>14.1f}" for m in models)
        lines.append(row + ("" if lv.stable else "  (not stable)"))
    if levels:
        best = best_level(levels)
        lines.append(f"best server throughput: {best.throughput:.2f} images/s at concurrency {best.concurrency}")
    if failed_requests is not None:
        lines.append(f"failed requests (server statistics): {failed_requests}")
    if eager is not None:
        lines.append(
            f"eager PyTorch in process: {eager.throughput:.2f} images/s ({eager.mean_ms:.1f} ms per image, "
            f"{eager.images} images, {eager.form} {eager.preset}, {eager.threads} threads)"
        )
        ratio = server_over_eager(levels, eager)
        if ratio is not None:
            lines.append(f"server / eager throughput: {ratio:.2f}x")
    elif eager_note:
        lines.append(f"eager PyTorch: {eager_note}")
    return lines


def write_summary_json(
    path: str | Path,
    levels: Sequence[LevelResult],
    eager: EagerResult | None,
    failed_requests: int | None,
    settings: dict,
) -> Path:
    path = Path(path)
    best = best_level(levels) if levels else None
    payload = {
        "settings": settings,
        "levels": [asdict(lv) for lv in levels],
        "best": {"concurrency": best.concurrency, "infer_per_s": best.throughput} if best else None,
        "failed_requests": failed_requests,
        "eager": {**asdict(eager), "infer_per_s": eager.throughput, "mean_ms": eager.mean_ms} if eager else None,
        "server_over_eager": server_over_eager(levels, eager),
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
