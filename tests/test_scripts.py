"""The helper scripts under scripts/ that produce shipped files (the embedded default weights)."""

import torch

from acfd.training.checkpoint import load_model, read_checkpoint
from acfd.weights import DEFAULT_WEIGHTS
from file_modules import load_script


def test_package_weights_keeps_the_model_and_sets_scales_for_its_training_size(tmp_path, capsys):
    package = load_script("package_weights")
    source = read_checkpoint(DEFAULT_WEIGHTS)
    # a full training checkpoint at 256 whose preset still holds the paper's scales
    full = dict(source, optimizer={"state": {}}, rng={"torch": torch.get_rng_state()})
    full["preset"] = dict(
        full["preset"],
        train=dict(full["preset"]["train"], input_size=256),
        inference=dict(
            full["preset"]["inference"], single_scale=(256, 256), test_scales=((480, 645), (640, 860), (800, 1075))
        ),
    )
    torch.save(full, tmp_path / "best.pt")
    assert package.main([str(tmp_path / "best.pt"), str(tmp_path / "w.pt")]) == 0
    assert "test scales 192x258, 256x344, 320x430" in capsys.readouterr().out
    shipped = read_checkpoint(tmp_path / "w.pt")
    assert "optimizer" not in shipped and "rng" not in shipped
    assert [list(s) for s in shipped["preset"]["inference"]["test_scales"]] == [[192, 258], [256, 344], [320, 430]]
    model, preset, _ = load_model(tmp_path / "w.pt")
    assert preset.train.input_size == 256 and preset.inference.single_scale == (256, 256)
    for name, value in source["model"].items():
        assert torch.equal(model.state_dict()[name], value), name
    assert package.main([str(tmp_path / "missing.pt"), str(tmp_path / "x.pt")]) == 1
    assert "no such checkpoint file" in capsys.readouterr().err


def test_package_weights_takes_the_threshold_of_best_f1_and_named_scales(tmp_path, capsys):
    import json

    package = load_script("package_weights")
    source = read_checkpoint(DEFAULT_WEIGHTS)
    torch.save(source, tmp_path / "best.pt")
    (tmp_path / "eval.json").write_text(json.dumps({"best_f1": {"f1": 0.7, "threshold": 0.41234}}))
    argv = [
        str(tmp_path / "best.pt"),
        str(tmp_path / "w.pt"),
        "--threshold-from",
        str(tmp_path / "eval.json"),
        "--scales",
        "300x400",
        "400x600",
    ]
    assert package.main(argv) == 0
    assert "display threshold 0.412" in capsys.readouterr().out
    _, preset, _ = load_model(tmp_path / "w.pt")
    assert preset.inference.display_threshold == 0.412
    assert preset.inference.test_scales == ((300, 400), (400, 600))
    (tmp_path / "eval.json").write_text("{}")
    assert package.main(argv) == 1
    assert "no best_f1 threshold" in capsys.readouterr().err
    assert package.main([str(tmp_path / "best.pt"), str(tmp_path / "w.pt"), "--scales", "300by400"]) == 1
    assert "--scales '300by400'" in capsys.readouterr().err


def test_the_default_weights_carry_their_display_threshold():
    _, preset, payload = load_model(DEFAULT_WEIGHTS)
    assert preset.name == "mid_cartoons" and 0.05 < preset.inference.display_threshold < 0.95
    assert "optimizer" not in payload and DEFAULT_WEIGHTS.stat().st_size < 25e6
