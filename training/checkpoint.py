"""Checkpoint files: written atomically, read back with one-line errors.

A checkpoint is a ``torch.save``'d dict::

    {"format": "acfd-checkpoint", "version": 1,
     "preset": Preset.to_dict(),        # what network the weights belong to
     "model": state_dict,               # train form (unfused) weights
     ... anything else the trainer keeps (optimizer, scheduler, scaler, epoch, iteration, rng, metrics)}

``save_checkpoint`` writes to a temporary file in the same folder, fsyncs it and renames it over
the target, so a killed process never leaves a half-written checkpoint behind.

``read_checkpoint`` is the one reader of these files: ``torch.load(..., weights_only=True)``, which
builds only tensors and plain data (dict, list, tuple, str, numbers), so a file from a stranger cannot
run code on load. A pickle that names anything else (``os.system``, a class) is refused in one line,
before anything of it runs. ``capture_rng_state`` stores NumPy's generator state as a tensor; older
training checkpoints hold it as a ``uint32`` array, and ``LEGACY_NUMPY_GLOBALS`` allows exactly that
(arrays of other dtypes, object arrays included, are still refused), so they load unchanged.

A training checkpoint (``acfd train``) also holds ``optimizer``, ``scheduler``, ``scaler``,
``epoch`` (epochs completed), ``iteration`` (optimizer steps done), ``rng`` (``capture_rng_state``)
and ``best_ap``; ``read_training_state`` checks those are there before a resume.
"""

from __future__ import annotations

import pickle
import random
import re
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from acfd.atomic_file import replaced_on_success
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
    with replaced_on_success(path, durable=True) as tmp:
        torch.save(payload, tmp)
    return path


def _legacy_numpy_globals() -> list:
    """What ``np.random.get_state()`` pickles as: a ``uint32`` array (names of NumPy 1 and 2)."""
    reconstruct = np.zeros(1).__reduce__()[0]
    return [
        np.ndarray,
        np.dtype,
        type(np.dtype(np.uint32)),
        (reconstruct, "numpy.core.multiarray._reconstruct"),
        (reconstruct, "numpy._core.multiarray._reconstruct"),
    ]


LEGACY_NUMPY_GLOBALS = _legacy_numpy_globals()
_UNTRUSTED = "only tensors and plain data are loaded; a file from an untrusted source?"


def _global_kind(name: str) -> str:
    """``'class'`` when ``name`` is a class of a module already imported, else ``'call'``; imports nothing."""
    module, _, attr = name.rpartition(".")
    found = getattr(sys.modules.get(module), "__dict__", {}).get(attr)
    return "class" if isinstance(found, type) else "call"


def _refusal(path: Path, err: Exception, zipped: bool) -> CheckpointError:
    """One line for what the weights-only unpickler refused (torch's own message is a page long)."""
    text = str(err)
    named = re.search(r"GLOBAL ([\w.]+)", text)
    if named:
        module, _, attr = named.group(1).rpartition(".")
        module = module or "builtins"  # torch names builtins bare: "GLOBAL exec"
        name = f"{'os' if module in ('posix', 'nt') else module}.{attr}"
        if _global_kind(f"{module}.{attr}") == "class":
            return CheckpointError(f"{path}: refused: the checkpoint holds an object of type {name} ({_UNTRUSTED})")
        return CheckpointError(f"{path}: refused: the checkpoint's pickle wants to call {name} ({_UNTRUSTED})")
    built = re.search(r"but got <class '([\w.]+)'>", text)
    if built:
        return CheckpointError(
            f"{path}: refused: the checkpoint holds an object of type {built.group(1)} ({_UNTRUSTED})"
        )
    detail = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n|$)", text)
    reason = detail.group(1) if detail else text.strip().splitlines()[0]
    what = "its pickle is damaged" if zipped else "not a torch.save file"
    return CheckpointError(f"{path}: not a readable checkpoint ({what}: {reason})")


def _check_arrays(path: Path, payload: Any) -> None:
    """NumPy arrays only as the legacy RNG keys (``uint32``); the unpickler could build others from parts."""
    stack = [payload]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, np.ndarray) and item.dtype != np.uint32:
            raise CheckpointError(f"{path}: refused: the checkpoint holds a NumPy array of {item.dtype} ({_UNTRUSTED})")


def _torch_load(path: Path, map_location: str | torch.device) -> Any:
    """``torch.load`` with ``weights_only=True``; every failure is a one-line ``CheckpointError``."""
    try:
        with open(path, "rb") as f:
            zipped = f.read(4) == b"PK\x03\x04"  # torch.save's format; the end record comes last
    except OSError as err:
        raise CheckpointError(f"{path}: not a readable checkpoint ({err.strerror or err})") from err
    if zipped and not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path}: not a readable checkpoint (truncated: its zip archive has no end record; "
            "an interrupted copy or download?)"
        )
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(LEGACY_NUMPY_GLOBALS):
            warnings.filterwarnings("ignore", category=UserWarning, module="torch")  # pickle protocol notes
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:  # what the weights-only unpickler raises for anything it refuses
        raise _refusal(path, err, zipped) from err
    except EOFError as err:
        what = "the file is empty" if path.stat().st_size == 0 else "the file ends early: truncated?"
        raise CheckpointError(f"{path}: not a readable checkpoint ({what})") from err
    except RuntimeError as err:  # PytorchStreamReader's page-long notes: the first sentence says it
        first = str(err).strip().split(". ")[0]
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({'corrupted' if zipped else 'RuntimeError'}: {first})"
        ) from err
    except Exception as err:  # torch raises many kinds for foreign files
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}: {first})") from err


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load (weights only: no code runs) and validate a checkpoint dict; ``CheckpointError`` says what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    payload = _torch_load(path, map_location)
    _check_arrays(path, payload)
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
    """Python, NumPy, torch (and CUDA, when present) generator states, for exact resumes.

    Plain data only (what ``weights_only`` loads): NumPy's ``('MT19937', keys, pos, has_gauss,
    cached_gaussian)`` keeps its 624 ``uint32`` keys as an int64 tensor, not an array.
    """
    name, keys, *rest = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), *rest),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Set the generators from ``capture_rng_state`` (or an older checkpoint's array form)."""
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    keys = keys.numpy() if isinstance(keys, torch.Tensor) else keys
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
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
        raise CheckpointError(
            f"{path}: no training state to resume from (lacks {missing}; an exported or foreign file?)"
        )
    return payload
