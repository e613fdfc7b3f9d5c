"""Inference, evaluation and ``acfd eval``: a scripted predictor for exact numbers, the real tiny
model on a generated set for the command end to end."""

from __future__ import annotations

import json
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from acfd.cli import main
from acfd.inference.config import InferenceConfig
from acfd.training.evaluation.evaluate import evaluate, json_summary
from acfd.training.evaluation.inference import detect, scales_for


class ScriptedPredictor(torch.nn.Module):
    """Predicts, at any input size, two boxes given as fractions of the input width/height."""

    def __init__(self, fractions, scores):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.fractions = torch.tensor(fractions, dtype=torch.float32)
        self.scores = torch.tensor(scores, dtype=torch.float32)
        self.seen_sizes: list[tuple[int, int]] = []

    def forward(self, images):
        batch, _, height, width = images.shape
        self.seen_sizes.append((height, width))
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        boxes = (self.fractions * scale).expand(batch, -1, -1)
        return self.scores.expand(batch, -1), boxes


def test_detect_maps_every_scale_back_to_the_original_image():
    # Box at x 25%-50%, y 10%-60% of any input; image 200 wide, 100 high -> (50, 10, 100, 60).
    predictor = ScriptedPredictor([[0.25, 0.1, 0.5, 0.6], [0.0, 0.0, 0.1, 0.1]], [0.9, 0.05])
    image = np.zeros((100, 200, 3), np.uint8)
    cfg = InferenceConfig()
    boxes, scores = detect(predictor, image, scales_for(cfg, multiscale=True), cfg)
    assert predictor.seen_sizes == [(480, 645), (640, 860), (800, 1075)]
    # three scales, same face: NMS leaves one; the 0.05 box is under the 0.08 threshold
    np.testing.assert_allclose(boxes, [[50, 10, 100, 60]], rtol=1e-5)
    assert scores.tolist() == pytest.approx([0.9])
    assert scales_for(cfg, multiscale=False) == ((640, 640),)


def test_evaluate_on_scripted_predictions(tmp_path):
    records = []
    for i, (w, h) in enumerate([(200, 100), (120, 160), (80, 80)]):
        path = tmp_path / f"{i}.png"
        cv2.imwrite(str(path), np.full((h, w, 3), 90, np.uint8))
        face = [0.25 * w, 0.1 * h, 0.5 * w, 0.6 * h] if i < 2 else [0, 0, 0.1 * w, 0.1 * h]
        records.append(SimpleNamespace(path=path, boxes=np.array([face], np.float32), width=w, height=h))
    records.append(SimpleNamespace(path=tmp_path / "missing.png", boxes=np.zeros((0, 4)), width=9, height=9))
    detection_set = SimpleNamespace(records=records, problems=[])
    predictor = ScriptedPredictor([[0.25, 0.1, 0.5, 0.6], [0.0, 0.0, 0.1, 0.1]], [0.9, 0.05])
    result = evaluate(predictor, detection_set, multiscale=False, cfg=InferenceConfig(), progress=False, batch_size=2)
    # Images 0 and 1: the 0.9 box hits the face. Image 2: the 0.9 box is a false positive and its
    # face is only found by the 0.05 box, which the threshold removes. Ranked: TP, TP, FP (ties keep
    # image order) -> AP = 2/3 of the recall at precision 1.
    assert result["images"] == 3 and result["faces"] == 3 and result["detections"] == 3
    assert result["ap"] == pytest.approx(2 / 3)
    assert result["recall"].tolist() == pytest.approx([1 / 3, 2 / 3, 2 / 3])
    assert len(result["skipped"]) == 1 and "missing.png" in result["skipped"][0]
    summary = json_summary(result)
    assert json.loads(json.dumps(summary))["ap"] == pytest.approx(2 / 3)


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    from acfd.scenes.synth import write_dataset

    out = tmp_path_factory.mktemp("synth")
    write_dataset(out, images=2, seed=3, size=(160, 120), progress=False)
    return out


def test_acfd_eval_preset_on_a_generated_set(synth_dir, tmp_path, capsys):
    plot, report = tmp_path / "pr.png", tmp_path / "eval.json"
    code = main(
        [
            "eval",
            "--preset",
            "tiny",
            "--data",
            str(synth_dir),
            "--limit",
            "1",
            "--no-progress",
            "--plot",
            str(plot),
            "--json",
            str(report),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    last = out.strip().splitlines()[-1]
    assert last.startswith("mAP@0.5: ") and 0.0 <= float(last.split()[-1]) <= 1.0
    data = json.loads(report.read_text())
    assert data["images"] == 1 and data["scales"] == [[640, 640]]
    assert data["faces"] >= 0 and data["seconds_per_image"] > 0
    assert len(data["precision"]) == len(data["recall"]) <= 1000
    assert cv2.imread(str(plot)).shape[2] == 3


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--preset", "tiny", "--data", "/nonexistent/set.json"], "/nonexistent/set.json: no such file"),
        (["--weights", "/nonexistent/w.pt", "--data", "SYNTH"], "/nonexistent/w.pt: no such checkpoint"),
        (["--preset", "no-such-preset", "--data", "SYNTH"], "unknown preset 'no-such-preset'"),
        (["--preset", "tiny", "--data", "SYNTH", "--plot", "/nonexistent/dir/pr.png"], "does not exist"),
    ],
)
def test_acfd_eval_user_errors_are_one_line(argv, needle, synth_dir, capsys):
    argv = [str(synth_dir) if a == "SYNTH" else a for a in argv]
    assert main(["eval", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_acfd_eval_at_named_scales(synth_dir, capsys):
    argv = ["eval", "--preset", "tiny", "--data", str(synth_dir), "--limit", "1", "--no-progress", "--json"]
    assert main(argv + ["--scales", "96x160"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert one["scales"] == [[96, 160]] and one["multiscale"] is False
    assert main(argv + ["--scales", "96x160", "128X200"]) == 0
    two = json.loads(capsys.readouterr().out)
    assert two["scales"] == [[96, 160], [128, 200]] and two["multiscale"] is True
    with pytest.raises(SystemExit):
        main(argv + ["--scales", "96by160"])
    assert "--scales '96by160': expected HxW with two positive integers" in capsys.readouterr().err


def test_acfd_eval_bf16_and_the_operating_point(synth_dir, capsys):
    argv = ["eval", "--preset", "tiny", "--data", str(synth_dir), "--no-progress", "--json", "--scales", "96x160"]
    assert main(argv + ["--min-score", "0.01"]) == 0
    fp32 = json.loads(capsys.readouterr().out)
    assert main(argv + ["--min-score", "0.01", "--precision", "bf16"]) == 0
    bf16 = json.loads(capsys.readouterr().out)
    assert (fp32["precision_mode"], bf16["precision_mode"]) == ("fp32", "bf16")
    for result in (fp32, bf16):
        at = result["at_threshold"]
        assert at["threshold"] == 0.01 and set(at["recall_by_size"]) == {"<32", "32-96", ">=96"}
        assert sum(v["faces"] for v in at["recall_by_size"].values()) == result["faces"]
        assert 0.0 <= result["best_f1"]["f1"] <= 1.0
    assert main(argv + ["--min-score", "1.5"]) == 2
    assert "--min-score 1.5: must be between 0 and 1" in capsys.readouterr().err
