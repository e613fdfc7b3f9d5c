"""Checkpoint files: written atomically, read back with one-line errors.

A checkpoint is a ``torch.save``'d dict::

    {"format": "acfd-checkpoint", "version": 1,
     "preset": Preset.to_dict(),        # what network the weights belong to
     "model": state_dict,               # train form (unfused) weights
     ... anything else the trainer keeps (optimizer, scheduler, scaler, epoch, iteration, rng, metrics)}

``save_checkpoint`` writes to a temporary file in the same folder, fsyncs it and renames it over
the target, so a killed process never leaves a half-written checkpoint behind.

A training checkpoint (``acfd train``) also holds ``optimizer``, ``scheduler``, ``scaler``,
``epoch`` (epochs completed), ``iteration`` (optimizer steps done), ``rng`` (``capture_rng_state``)
and ``best_ap``; ``read_training_state`` checks those are there before a resume.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from acfd.atomic_file import publish
from acfd.training.config import Preset

FORMAT = "acfd-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the problem."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Atomically write ``state`` (must hold ``preset`` and ``model``) to ``path``."""
    path = Path(path)
    missing = {"preset", "model"} - set(state)
    if missing:
        raise ValueError(f"checkpoint state lacks {sorted(missing)}")
    payload = {"format": FORMAT, "version": VERSION, **state}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        publish(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint dict; ``CheckpointError`` says what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # torch raises many kinds for truncated or foreign files
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an ACFD checkpoint (no '{FORMAT}' format marker)")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload.get('version')} is not supported (want {VERSION})")
    return payload


def load_model(path: str | Path, expect_preset: str | None = None, map_location: str | torch.device = "cpu"):
    """Build the network a checkpoint describes and load its weights.

    Returns ``(model, preset, payload)``. With ``expect_preset``, a checkpoint of another preset is an
    error. Mismatched weights (a file edited by hand, another model) are an error, not a partial load.
    """
    from acfd.training.model import build_model

    payload = read_checkpoint(path, map_location)
    try:
        preset = Preset.from_dict(payload["preset"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: checkpoint preset is unreadable ({err})") from err
    if expect_preset is not None and preset.name != expect_preset:
        raise CheckpointError(f"{path}: checkpoint is for preset {preset.name!r}, not {expect_preset!r}")
    model = build_model(preset)
    try:
        model.load_state_dict(payload["model"], strict=True)
    except (RuntimeError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: weights do not fit preset {preset.name!r} ({first})") from err
    return model, preset, payload


TRAINING_KEYS = ("train_model", "ema_updates", "optimizer", "scheduler", "scaler", "epoch", "iteration", "rng")


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA, when present) generator states, for exact resumes."""
    state: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def read_training_state(path: str | Path, preset_name: str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint to resume training from: of ``preset_name``, with the full training state."""
    payload = read_checkpoint(path, map_location)
    saved = (payload.get("preset") or {}).get("name")
    if saved != preset_name:
        raise CheckpointError(f"{path}: checkpoint is a {saved!r} run, not {preset_name!r}")
    missing = [key for key in TRAINING_KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"{path}: no training state to resume from (lacks {missing}; an exported or foreign file?)")
    return payload
