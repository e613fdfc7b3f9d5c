"""The load test's outputs: ``results.csv``, a throughput/latency plot, ``summary.json`` and a
one-screen text summary.

Contract:

* ``write_results_csv(path, levels)``: one row per concurrency level with columns ``concurrency,
  infer_per_s, p50_ms, p90_ms, p95_ms, p99_ms, avg_ms, server_queue_ms, server_compute_ms``, then
  per composing model of the ensemble ``<model>_ms`` (its average server request latency),
  ``<model>_queue_ms`` and ``<model>_compute_ms`` (per request of that model: the detector runs
  once per test scale), then ``requests, stable``.
* ``plot_sweep(path, levels, in_process)``: a PNG with throughput (and the in-process pipeline's as
  a reference line), p50/p95/p99 latency, and each model's compute and queue time against
  concurrency.
* ``InProcessResult`` is the yardstick: the served pipeline in one process
  (``acfd.inference.pipeline.InProcessPipeline``); ``server_over_in_process`` is the ratio of the
  best server throughput to it, ``level_ratios`` the ratio at every level.
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
class InProcessResult:
    """The same images through the served pipeline in this process, one at a time, in a loop."""

    images: int  # inferences timed
    seconds: float
    export: str
    preset: str
    engine: str  # e.g. "openvino (bf16, 2 threads)"
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


def server_over_in_process(levels: Sequence[LevelResult], local: InProcessResult | None) -> float | None:
    if not levels or local is None or local.throughput <= 0:
        return None
    return best_level(levels).throughput / local.throughput


def level_ratios(levels: Sequence[LevelResult], local: InProcessResult | None) -> dict[int, float]:
    """Server over in-process throughput at each concurrency level."""
    if local is None or local.throughput <= 0:
        return {}
    return {level.concurrency: level.throughput / local.throughput for level in levels}


def write_results_csv(path: str | Path, levels: Sequence[LevelResult]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    models = composing_models(levels)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        per_model = [f"{m}_{kind}" for m in models for kind in ("ms", "queue_ms", "compute_ms")]
        writer.writerow([*BASE_COLUMNS, *per_model, "requests", "stable"])
        for lv in levels:
            writer.writerow(
                [
                    lv.concurrency,
                    f"{lv.throughput:.3f}",
                    *(f"{v:.3f}" for v in (lv.p50_ms, lv.p90_ms, lv.p95_ms, lv.p99_ms, lv.avg_ms)),
                    f"{lv.server_queue_ms:.3f}",
                    f"{lv.server_compute_ms:.3f}",
                    *(
                        f"{table[m]:.3f}" if m in table else ""
                        for m in models
                        for table in (lv.composing_ms, lv.composing_queue_ms, lv.composing_compute_ms)
                    ),
                    lv.requests,
                    "yes" if lv.stable else "no",
                ]
            )
    return path


def plot_sweep(
    path: str | Path, levels: Sequence[LevelResult], local: InProcessResult | None = None, title: str = ""
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conc = [lv.concurrency for lv in levels]
    fig, (ax_t, ax_l, ax_m) = plt.subplots(1, 3, figsize=(15, 4.2))
    ax_t.plot(conc, [lv.throughput for lv in levels], "o-", color="tab:blue", label="Triton server (perf_analyzer)")
    if local is not None and local.throughput > 0:
        ax_t.axhline(
            local.throughput, color="tab:gray", ls="--", label=f"in process, {local.engine} ({local.throughput:.2f}/s)"
        )
    ax_t.set_ylabel("images / s")
    ax_t.set_title("throughput")
    ax_t.legend(fontsize=8, loc="best")
    for key, style in (("p50_ms", "o-"), ("p95_ms", "s--"), ("p99_ms", "^:")):
        ax_l.plot(conc, [getattr(lv, key) for lv in levels], style, label=key.replace("_ms", ""))
    ax_l.set_ylabel("latency (ms)")
    ax_l.set_title("client latency")
    ax_l.legend(fontsize=8, loc="upper left")
    for index, model in enumerate(composing_models(levels)):
        color = f"C{index}"
        compute = [lv.composing_compute_ms.get(model, float("nan")) for lv in levels]
        queue = [lv.composing_queue_ms.get(model, float("nan")) for lv in levels]
        ax_m.plot(conc, compute, "o-", color=color, label=f"{model} compute")
        ax_m.plot(conc, queue, "x:", color=color, label=f"{model} queue")
    ax_m.set_ylabel("ms per model request")
    if composing_models(levels):
        ax_m.set_title("server time per composing model")
        ax_m.legend(fontsize=7, loc="upper left")
    else:  # a client-driven sweep over several servers: no per-model server times
        ax_m.set_title("server time per composing model: not measured (client-driven)")
    for ax in (ax_t, ax_l, ax_m):
        ax.set_xlabel("concurrent requests")
        ax.set_ylim(bottom=0)
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
    local: InProcessResult | None,
    failed_requests: int | None,
    header: str = "",
    local_note: str = "",
) -> list[str]:
    """A one-screen text summary: the sweep table with each model's compute time and the ratio to
    the in-process pipeline per level, failures, and the best server / in-process ratio."""
    models = composing_models(levels)
    ratios = level_ratios(levels, local)
    lines = [header] if header else []
    head = f"{'conc':>4} {'infer/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}"
    head += "".join(f" {m[:11] + ' cmp ms':>18}" for m in models)
    head += f" {'server/local':>12}" if ratios else ""
    lines.append(head)
    for lv in levels:
        row = f"{lv.concurrency:>4} {lv.throughput:>8.2f} {lv.p50_ms:>8.1f} {lv.p95_ms:>8.1f} {lv.p99_ms:>8.1f}"
        row += "".join(f" {lv.composing_compute_ms.get(m, float('nan')):>18.1f}" for m in models)
        row += f" {ratios[lv.concurrency]:>12.2f}" if ratios else ""
        lines.append(row + ("" if lv.stable else "  (not stable)"))
    if models:
        lines.append("cmp ms: a model's server compute time (input + infer + output) per request of it; "
                     "the detector has one request per test scale")  # fmt: skip
    if levels:
        best = best_level(levels)
        lines.append(f"best server throughput: {best.throughput:.2f} images/s at concurrency {best.concurrency}")
    if failed_requests is not None:
        lines.append(f"failed requests (server statistics): {failed_requests}")
    if local is not None:
        lines.append(
            f"in process (the same pipeline, one process): {local.throughput:.2f} images/s ({local.mean_ms:.1f} ms "
            f"per image, {local.images} images, {local.preset}, {local.engine})"
        )
        ratio = server_over_in_process(levels, local)
        if ratio is not None:
            lines.append(f"server / in-process throughput: {ratio:.2f}x (best level)")
    elif local_note:
        lines.append(f"in process: {local_note}")
    return lines


def write_summary_json(
    path: str | Path,
    levels: Sequence[LevelResult],
    local: InProcessResult | None,
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
        "in_process": {**asdict(local), "infer_per_s": local.throughput, "mean_ms": local.mean_ms} if local else None,
        "server_over_in_process": server_over_in_process(levels, local),
        "server_over_in_process_by_level": {str(c): r for c, r in level_ratios(levels, local).items()},
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
