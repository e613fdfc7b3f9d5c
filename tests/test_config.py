"""Presets: the paper's values written once (the dataclass defaults), every value type-checked at load."""

import dataclasses

import pytest

from acfd.training.config import InferenceConfig, ModelConfig, Preset, TrainConfig, load_preset


def test_acfd51_is_the_defaults():
    paper = load_preset("acfd51")
    assert (paper.model, paper.train, paper.inference) == (ModelConfig(), TrainConfig(), InferenceConfig())


def test_yaml_lists_become_tuples_and_integers_floats():
    mid = load_preset("mid")
    assert mid.inference.test_scales == ((288, 387), (384, 516), (480, 645))
    assert isinstance(mid.train.multiscale, tuple)


def _load(tmp_path, text):
    path = tmp_path / "x.yaml"
    path.write_text(text)
    return load_preset(str(path)), path


@pytest.mark.parametrize(
    "text,message",
    [
        ("train:\n  epochs: '30'\n", "train.epochs: expected an integer, got '30' (str)"),
        ("train:\n  epochs: 30.0\n", "train.epochs: expected an integer, got 30.0 (float)"),
        ("train:\n  epochs: true\n", "train.epochs: expected an integer, got True (bool)"),
        ("train:\n  weight_decay: 5e-4\n", "train.weight_decay: expected a number, got '5e-4' (str)"),
        ("train:\n  psi2_norm: 2\n", "train.psi2_norm: expected a string, got 2 (int)"),
        ("train:\n  lr_milestones: 200\n", "train.lr_milestones: expected a list of integers, got 200 (int)"),
        (
            "train:\n  lr_milestones: [200, x]\n",
            "train.lr_milestones: expected a list of integers, got [200, 'x'] (list)",
        ),
        (
            "model:\n  stage_repeats: [1, 1.5]\n",
            "model.stage_repeats: expected a list of integers, got [1, 1.5] (list)",
        ),
        (
            "inference:\n  single_scale: [640]\n",
            "inference.single_scale: expected a list of 2 integers, got [640] (list)",
        ),
        (
            "inference:\n  test_scales: [[480, 645], [640]]\n",
            "inference.test_scales: expected a list of lists of 2 integers, got [[480, 645], [640]] (list)",
        ),
        ("train:\n  epoch: 30\n", "train: unknown keys ['epoch']"),
        ("trian:\n  epochs: 30\n", "unknown sections ['trian']"),
        ("train: 30\n", "train: expected a mapping of keys, got 30"),
    ],
)
def test_a_wrong_key_or_type_is_one_line_naming_file_and_field(tmp_path, text, message):
    with pytest.raises(ValueError) as err:
        _load(tmp_path, "base: tiny\n" + text)
    line = str(err.value)
    assert "\n" not in line and message in line and str(tmp_path / "x.yaml") in line


def test_a_bad_value_in_a_base_names_the_base_file(tmp_path):
    (tmp_path / "b.yaml").write_text("train:\n  epochs: '30'\n")
    with pytest.raises(ValueError, match=r"b\.yaml: train\.epochs: expected an integer"):
        _load(tmp_path, f"base: {tmp_path / 'b.yaml'}\n")


def test_right_types_load(tmp_path):
    preset, _ = _load(tmp_path, "base: tiny\ntrain:\n  epochs: 30\n  ema_tau: 2\n  multiscale: [1, 1.25]\n")
    assert preset.train.epochs == 30 and preset.train.ema_tau == 2.0 and isinstance(preset.train.ema_tau, float)
    assert preset.train.multiscale == (1.0, 1.25)


def test_checkpoint_presets_are_checked_too():
    data = dataclasses.asdict(Preset("tiny"))
    assert Preset.from_dict(data) == Preset("tiny")
    data["train"]["epochs"] = "30"
    with pytest.raises(ValueError, match=r"^train\.epochs: expected an integer, got '30' \(str\)$"):
        Preset.from_dict(data)


def test_every_field_type_has_a_check():
    for cls in (ModelConfig, TrainConfig, InferenceConfig):
        defaults = {f.name: getattr(cls(), f.name) for f in dataclasses.fields(cls)}
        assert Preset.from_dict({"name": "x", cls.__name__.replace("Config", "").lower(): defaults})
