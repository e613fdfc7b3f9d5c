"""benchmarks/gpu_check.py: its --dry-run (CPU, tiny shapes, Triton interpreter) runs every step, so
the script a GPU session runs in its few minutes cannot rot; without a GPU and without --dry-run it
says so and exits 2."""

import json
import os
import subprocess
import sys
from pathlib import Path

from file_modules import load_file

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def test_dry_run_runs_every_step_and_writes_the_report(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path), "--dry-run"], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    gpu_check = load_file(SCRIPT)
    assert report["dry_run"] is True and report["all_ok"] is True
    for step in gpu_check.STEPS:
        assert step in report and not (isinstance(report[step], dict) and "error" in report[step]), report[step]
    assert {r["scene"] for r in report["dam_check"]} >= {"realistic", "crowded"}
    assert all(r["ok"] for r in report["dam_check"] + report["loss_check"])
    bench = {r["name"]: r for r in report["kernel_bench"]}
    assert "ms" in bench["dam_match/realistic/triton"] and "ms" in bench["mbc_loss/bf16/compile"]
    assert [r["kernels"] for r in report["train_speed"]] == ["triton", "torch"]
    assert all(r["ms_per_step"] > 0 for r in report["train_speed"])
    assert report["inference"]["end_to_end_ms"] > 0 and len(report["inference"]["scales"]) == 3
    assert report["nms"]["cases"] and all("numpy_ms" in c for c in report["nms"]["cases"])


def test_without_a_gpu_it_says_so(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert load_file(SCRIPT).main([str(tmp_path)]) == 2
    assert "no CUDA device" in capsys.readouterr().err
