"""scripts/train_gpu.sh --dry-run: the GPU training recipe with its wall-clock budget, run on CPU
for one minute (tiny preset, 128 px) on the shared iCartoonFace subset: split, budgeted training
(stopped by the budget, or done with the epochs it planned to fit, whichever the machine's speed
gives), hold-out evaluation, packaged weights and summary. The budget's stopping rule itself is
tests/test_budget.py's, without timing."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from acfd.training.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ACFD_REAL_DATA", ROOT.parent / "shared" / "data" / "icartoonface_train"))


@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "icartoonface_dettrain.csv").is_file(), reason=f"no iCartoonFace subset at {DATA}")
def test_dry_run_trains_within_its_minute_and_scores_the_holdout(tmp_path):
    out = tmp_path / "gpu-run"
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "train_gpu.sh"), "--dry-run", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["preset"] == "tiny" and summary["budget_minutes"] == 1.0
    plan = summary["budget_plan"]
    assert plan and plan["epochs"] < 300 and summary["epochs"] <= plan["epochs"]
    assert "stopped by --max-minutes 1" in proc.stdout or summary["epochs"] == plan["epochs"]
    assert 0.0 <= summary["holdout_map50"] <= 1.0
    saved = read_checkpoint(out / "train" / "last.pt")
    assert saved["preset"]["train"]["epochs"] == plan["epochs"] and saved["budget_plan"] == plan
    assert (out / "weights.pt").is_file() and (out / "train" / "best.pt").is_file()
    assert json.loads((out / "eval.json").read_text())["images"] == 230
