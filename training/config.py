"""Presets: plain dataclasses filled from small YAML files in ``training/presets/``.

A preset file may name a ``base`` preset and override only what differs (``tiny`` is a few lines
on top of ``acfd51``, the paper's model). The defaults below are the paper's values, written only
here: ``acfd51.yaml`` states nothing of its own. Every value is checked against its field's type at
load, and a wrong key or type fails with one line naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from acfd.inference.config import InferenceConfig

PRESET_DIR = Path(__file__).with_name("presets")
SECTIONS = ("model", "train", "inference")


@dataclass(frozen=True)
class ModelConfig:
    """Network shape. Defaults are the paper's VoVNetV3-51 (Table 1)."""

    stem_channels: tuple[int, ...] = (64, 64, 128)
    stage_channels: tuple[int, ...] = (128, 160, 192, 224, 128, 128)
    concat_channels: tuple[int, ...] = (256, 512, 768, 1024, 128, 128)
    stage_repeats: tuple[int, ...] = (1, 1, 2, 2, 1, 1)
    layers_per_module: int = 5
    neck_channels: int = 128
    neck_repeats: int = 2
    head_channels: int = 128
    head_depth: int = 2
    strides: tuple[int, ...] = (4, 8, 16, 32, 64, 128)
    anchor_scale: float = 4.0  # anchor side = anchor_scale * stride
    prior_prob: float = 0.01  # classification bias init


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and matching hyper-parameters (paper section 4.1)."""

    base_lr: float = 0.04  # at base_batch images per step; scaled linearly with the real batch
    base_batch: int = 64
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_iters: int = 1000
    warmup_start_lr: float = 1e-6
    epochs: int = 300
    lr_milestones: tuple[int, ...] = (200, 250, 280)
    input_size: int = 640
    t1: float = 0.35
    t2: float = 0.7
    lambda_reg: float = 0.7
    lambda_cls: float = 0.7
    margin: float = 0.2
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    # psi2 normaliser of eq. (1)-(2): "n2" (the paper) or "max_n1_n2" (max(N1, N2): early in training
    # a batch has N2 = 1..5 compensated anchors, each then weighted ~N1/N2 times a psi1 anchor, which
    # makes gradient spikes; see acfd.training.loss)
    psi2_norm: str = "n2"
    # Recipe additions beyond the paper (issue 13; acfd.training.ema, acfd.training.data.mosaic):
    ema_decay: float = 0.998  # weight EMA validated, saved and exported; 0 turns it off
    ema_tau: float = 400.0  # EMA decay ramp, in iterations: decay * (1 - exp(-k / tau))
    mosaic_prob: float = 0.0  # share of training samples built as 4-image mosaics
    mosaic_off_epochs: int = 0  # the last N epochs train without mosaic
    multiscale: tuple[float, ...] = ()  # input side per batch drawn from input_size * these (x32); () fixed


def train_sizes(cfg: TrainConfig) -> tuple[int, ...]:
    """The input sides a run trains at: ``input_size``, or its ``multiscale`` multiples rounded to x32."""
    if not cfg.multiscale:
        return (cfg.input_size,)
    return tuple(sorted({max(32, int(round(cfg.input_size * f / 32)) * 32) for f in cfg.multiscale}))


@dataclass(frozen=True)
class Preset:
    name: str
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Preset":
        return cls(
            name=data["name"],
            model=_build(ModelConfig, data.get("model", {}), "model"),
            train=_build(TrainConfig, data.get("train", {}), "train"),
            inference=_build(InferenceConfig, data.get("inference", {}), "inference"),
        )


def inference_for_size(inference: InferenceConfig, size: int, preset_size: int) -> InferenceConfig:
    """Test scales for a model trained at ``size`` instead of its preset's ``preset_size``.

    The paper's scales (480x645, 640x860, 800x1075) bracket its 640 training size; a model trained
    smaller sees its faces at other sizes relative to the anchors, so its scales shrink by the same
    factor (``size / preset_size``, rounded half up), and the single scale becomes ``size x size``.
    """
    if size == preset_size:
        return inference
    f = size / preset_size

    def scaled(v: int) -> int:
        return max(1, int(v * f + 0.5))

    return dataclasses.replace(
        inference,
        single_scale=(size, size),
        test_scales=tuple((scaled(h), scaled(w)) for h, w in inference.test_scales),
    )


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name: str) -> Preset:
    """Load a preset by name (``acfd51``, ``tiny``) or from a YAML file path."""
    raw = _read_layers(name, seen=())
    preset_name = Path(name).stem if name.endswith((".yaml", ".yml")) else name
    return Preset(
        name=preset_name,
        model=_build(ModelConfig, raw.get("model", {}), f"{name}: model"),
        train=_build(TrainConfig, raw.get("train", {}), f"{name}: train"),
        inference=_build(InferenceConfig, raw.get("inference", {}), f"{name}: inference"),
    )


def _read_layers(name: str, seen: tuple[str, ...]) -> dict:
    path = Path(name) if name.endswith((".yaml", ".yml")) else PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown preset {name!r}: choose one of {available_presets()} or give a YAML file")
    if name in seen:
        raise ValueError(f"preset {name!r} names itself as a base: {' -> '.join(seen + (name,))}")
    shown = path if name.endswith((".yaml", ".yml")) else f"presets/{path.name}"
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"preset {shown}: expected a mapping of sections, got {type(data).__name__}")
    base = data.pop("base", None)
    unknown = set(data) - set(SECTIONS)
    if unknown:
        raise ValueError(f"preset {shown}: unknown sections {sorted(unknown)}")
    for section, cls in zip(SECTIONS, (ModelConfig, TrainConfig, InferenceConfig)):
        if not isinstance(data.get(section) or {}, dict):
            raise ValueError(f"{shown}: {section}: expected a mapping of keys, got {data[section]!r}")
        _build(cls, data.get(section) or {}, f"{shown}: {section}")  # each file's own values, named by it
    merged = _read_layers(base, seen + (name,)) if base else {}
    for section in SECTIONS:
        merged.setdefault(section, {}).update(data.get(section) or {})
    return merged


def _build(cls, values: dict, where: str):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"preset {where}: unknown keys {sorted(unknown)}")
    hints = typing.get_type_hints(cls)
    converted = {}
    for key, value in values.items():
        converted[key], problem = _typed(value, hints[key])
        if problem:
            raise ValueError(f"{where}.{key}: expected {problem}, got {value!r} ({type(value).__name__})")
    return cls(**converted)


_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _typed(value, hint):
    """``(value, None)`` with YAML lists as tuples and integers as floats where a float is due, or
    ``(value, what was expected)``."""
    if hint in (int, str, bool):
        ok = isinstance(value, hint) and (hint is bool or not isinstance(value, bool))
        return value, None if ok else _NAMES[hint]
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return (float(value), None) if ok else (value, _NAMES[float])
    args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple:
        what = _describe(hint)
        if not isinstance(value, (list, tuple)):
            return value, what
        items = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        if len(items) != len(value):
            return value, what
        out = []
        for item, item_hint in zip(value, items):
            typed, problem = _typed(item, item_hint)
            if problem:
                return value, what
            out.append(typed)
        return tuple(out), None
    raise TypeError(f"no preset check for type {hint}")  # a new field type: teach _typed about it


def _describe(hint, plural: bool = False) -> str:
    if typing.get_origin(hint) is not tuple:
        return {int: "integers", float: "numbers", str: "strings", bool: "booleans"}[hint] if plural else _NAMES[hint]
    args = typing.get_args(hint)
    count = "" if len(args) == 2 and args[1] is Ellipsis else f"{len(args)} "
    return f"{'lists' if plural else 'a list'} of {count}{_describe(args[0], plural=True)}"
