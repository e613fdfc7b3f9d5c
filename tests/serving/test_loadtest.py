"""``acfd loadtest`` and the perf_analyzer driver against the real server of the session fixture:
a short sweep (concurrency 1 and 2) finishes with zero failed requests and writes a CSV with rows,
the plot and the server / in-process ratios; a request the server refuses fails the sweep with its reason."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

from acfd.cli import main as acfd_main
from acfd.clients.perf_analyzer import (
    PerfAnalyzerError,
    SweepSettings,
    check_perf_analyzer,
    find_perf_analyzer,
    run_level,
    write_input_data,
)

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def perf_analyzer():
    try:
        install = find_perf_analyzer()
        check_perf_analyzer(install)
    except PerfAnalyzerError as err:
        pytest.fail(f"make setup installs this, so its absence is a broken setup, not a skip: {err}")
    return install


def test_short_sweep_writes_csv_plot_and_ratio(serving, perf_analyzer, tmp_path, capsys):
    out = tmp_path / "report"
    code = acfd_main(
        [
            "loadtest", "--url", serving.url, "--concurrency", "1:2:1", "--seconds", "1", "--max-trials", "3",
            "--stability", "1000", "--images", "2", "--size", "160x96", "--out", str(out),
            "--export", str(serving.export_dir), "--local-seconds", "0.2", "--local-threads", "1",
        ]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["concurrency"]) for r in rows] == [1, 2]
    for row in rows:
        assert float(row["infer_per_s"]) > 0 and int(row["requests"]) > 0
        assert float(row["p50_ms"]) <= float(row["p95_ms"]) <= float(row["p99_ms"])
        for member in ("preprocess", "detector", "postprocess"):  # per composing model server times
            request, queue, compute = (float(row[f"{member}_{kind}"]) for kind in ("ms", "queue_ms", "compute_ms"))
            assert request > 0 and compute > 0 and queue >= 0 and queue + compute <= request + 1e-3
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed_requests"] == 0
    local = summary["in_process"]
    assert local["images"] >= 2 and local["preset"] == serving.preset.name and local["threads"] == 1
    assert local["engine"].startswith("openvino")  # the engine the served detector reports
    best = max(float(r["infer_per_s"]) for r in rows)
    assert summary["server_over_in_process"] == pytest.approx(best / local["infer_per_s"], rel=1e-3)
    by_level = summary["server_over_in_process_by_level"]
    assert by_level["2"] == pytest.approx(float(rows[1]["infer_per_s"]) / local["infer_per_s"], rel=1e-3)
    assert "server / in-process throughput" in printed and "failed requests (server statistics): 0" in printed
    assert "server/local" in printed
    png = cv2.imread(str(out / "loadtest.png"))
    assert png is not None and png.shape[0] > 100 and png.shape[1] > 100
    data = json.loads((out / "input_data.json").read_text())["data"]
    assert len(data) == 2 and all(entry["IMAGE"]["shape"][0] > 0 for entry in data)


def test_a_refused_request_fails_the_level_with_its_reason(serving, perf_analyzer, tmp_path):
    good = cv2.imencode(".png", np.zeros((32, 32, 3), np.uint8))[1].tobytes()
    input_data = write_input_data(tmp_path / "bad.json", [good, b"these bytes are no image"])
    settings = SweepSettings(url=serving.url, window_s=1.0, max_trials=3, stability_pct=1000)
    with pytest.raises(PerfAnalyzerError, match="cannot decode"):
        run_level(perf_analyzer, settings, input_data, 1, tmp_path / "runs")
