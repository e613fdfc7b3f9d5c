"""Checkpoints are read with ``weights_only=True``: a file from a stranger cannot run code on load.

A crafted pickle's payload does not run (its marker file and environment variable stay absent) and
is refused in one line naming the file and the call, through the Python reader and through
``acfd export`` / ``acfd eval``; broken and foreign files get their own lines; today's files (the
embedded weights, a training checkpoint written by the save code before RNG states were plain data)
load unchanged.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from acfd.training.checkpoint import (
    CheckpointError,
    load_model,
    read_checkpoint,
    read_training_state,
    restore_rng_state,
)
from acfd.weights import DEFAULT_WEIGHTS

UNTRUSTED = "(only tensors and plain data are loaded; a file from an untrusted source?)"


class _Payload:
    """Unpickling this calls ``fn(*args)``: what a malicious checkpoint does."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _write_evil(path, marker):
    """An ACFD-looking checkpoint whose pickle would write ``marker`` and set ACFD_PWNED."""
    code = f"import os; os.environ['ACFD_PWNED'] = '1'; open({str(marker)!r}, 'w').write('ran')"
    torch.save(
        {
            "format": "acfd-checkpoint",
            "version": 1,
            "preset": {"name": "tiny"},
            "model": {"w": torch.zeros(1)},
            "hook": _Payload(exec, code),
        },
        path,
    )
    return path


def _message(path) -> str:
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)
    message = str(caught.value)
    assert len(message.splitlines()) == 1, message
    return message


@pytest.fixture
def evil(tmp_path, monkeypatch):
    monkeypatch.delenv("ACFD_PWNED", raising=False)
    marker = tmp_path / "payload-ran"
    return _write_evil(tmp_path / "evil.pt", marker), marker


def test_the_crafted_checkpoint_has_teeth(evil):
    """The unsafe load this project no longer does would run the payload."""
    path, marker = evil
    torch.load(path, weights_only=False)
    assert marker.read_text() == "ran" and os.environ.get("ACFD_PWNED") == "1"


def test_malicious_checkpoint_is_refused_and_its_payload_does_not_run(evil):
    path, marker = evil
    assert _message(path) == f"{path}: refused: the checkpoint's pickle wants to call builtins.exec {UNTRUSTED}"
    with pytest.raises(CheckpointError):
        load_model(path)
    with pytest.raises(CheckpointError):
        read_training_state(path, "tiny")
    assert not marker.exists() and "ACFD_PWNED" not in os.environ


def test_os_system_payload_is_named_as_os_system(tmp_path):
    marker = tmp_path / "touched"
    path = tmp_path / "system.pt"
    torch.save({"format": "acfd-checkpoint", "version": 1, "x": _Payload(os.system, f"touch {marker}")}, path)
    assert _message(path) == f"{path}: refused: the checkpoint's pickle wants to call os.system {UNTRUSTED}"
    # the same payload in torch's old (pre-zip) format
    legacy = tmp_path / "legacy.pt"
    torch.save({"x": _Payload(os.system, f"touch {marker}")}, legacy, _use_new_zipfile_serialization=False)
    assert "wants to call os.system" in _message(legacy)
    assert not marker.exists()


@pytest.mark.parametrize("command", ["export", "eval"])
def test_cli_refuses_the_malicious_checkpoint_in_one_line(evil, tmp_path, command):
    path, marker = evil
    args = {"export": ["--out", str(tmp_path / "e"), "--quiet"], "eval": ["--data", str(tmp_path), "--no-progress"]}
    proc = subprocess.run(
        [sys.executable, "-m", "acfd", command, "--weights", str(path), *args[command]],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"{path}: refused: the checkpoint's pickle wants to call builtins.exec" in lines[0]
    assert not marker.exists() and "ACFD_PWNED" not in os.environ


def test_train_init_and_resume_refuse_the_malicious_checkpoint(evil, scenes, tmp_path, capsys):
    from acfd.cli import main

    path, marker = evil
    base = ["train", "--data", str(scenes), "--preset", "tiny", "--no-progress", "--workers", "0"]
    assert main(base + ["--out", str(tmp_path / "init"), "--init", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("acfd train: --init") and len(err.splitlines()) == 1
    assert f"{path}: refused: the checkpoint's pickle wants to call builtins.exec" in err
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(path.read_bytes())
    assert main(base + ["--out", str(run), "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("acfd train: --resume") and len(err.splitlines()) == 1 and "wants to call builtins.exec" in err
    )
    assert not marker.exists() and "ACFD_PWNED" not in os.environ


def test_unexpected_types_are_refused(tmp_path):
    module = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), module)  # a whole pickled model, not a state dict
    assert (
        _message(module)
        == f"{module}: refused: the checkpoint holds an object of type torch.nn.modules.linear.Linear {UNTRUSTED}"
    )
    floats = tmp_path / "floats.pt"
    torch.save({"format": "acfd-checkpoint", "version": 1, "a": np.zeros(3)}, floats)
    assert "holds an object of type numpy.dtypes.Float64DType" in _message(floats)


class _ObjectArray:
    """Pickles as ``np.ndarray`` rebuilt with an object dtype, from globals the legacy allow-list admits."""

    def __reduce__(self):
        reconstruct = np.zeros(1).__reduce__()[0]
        object_dtype = _Payload(np.dtype, "O8", False, True)  # no BUILD step: the dtype class check is skipped
        return reconstruct, (np.ndarray, (0,), b"b"), (1, (2,), object_dtype, False, ["a", "b"])


def test_an_object_array_assembled_from_allowed_parts_is_refused(tmp_path):
    path = tmp_path / "objects.pt"
    torch.save({"format": "acfd-checkpoint", "version": 1, "x": _ObjectArray()}, path)
    assert _message(path) == f"{path}: refused: the checkpoint holds a NumPy array of object {UNTRUSTED}"


def test_broken_files_each_get_their_own_line(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"format": "acfd-checkpoint", "version": 1, "model": {"w": torch.zeros(64, 64)}}, good)
    data = good.read_bytes()
    cases = {
        "cut.pt": (
            data[: len(data) // 2],
            "not a readable checkpoint (truncated: its zip archive has no end record; "
            "an interrupted copy or download?)",
        ),
        "empty.pt": (b"", "not a readable checkpoint (the file is empty)"),
        "junk.pt": (
            np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
            "not a readable checkpoint (not a torch.save file: Unsupported operand 95)",
        ),
    }
    for name, (content, expected) in cases.items():
        (tmp_path / name).write_bytes(content)
        assert _message(tmp_path / name) == f"{tmp_path / name}: {expected}"
    assert _message(tmp_path / "missing.pt") == f"{tmp_path / 'missing.pt'}: no such checkpoint file"


def test_another_projects_checkpoint(tmp_path):
    foreign = tmp_path / "resnet.pt"
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}, "epoch": 3}, foreign)
    assert _message(foreign) == f"{foreign}: not an ACFD checkpoint (no 'acfd-checkpoint' format marker)"
    bare = tmp_path / "bare.pt"
    torch.save(torch.zeros(3), bare)
    assert _message(bare) == f"{bare}: not an ACFD checkpoint (no 'acfd-checkpoint' format marker)"


@pytest.mark.parametrize(
    "path, preset_name, epoch, threshold",
    [
        (DEFAULT_WEIGHTS, "mid_cartoons", 7, 0.605),  # the default (issue 22)
        (DEFAULT_WEIGHTS.with_name("acfd_mid_icartoonface.pt"), "mid", 34, 0.487),  # stage 1, --init
    ],
)
def test_the_embedded_weights_load_unchanged(path, preset_name, epoch, threshold):
    model, preset, payload = load_model(path)
    assert (preset.name, payload["epoch"], preset.inference.display_threshold) == (preset_name, epoch, threshold)
    # plain data through and through: torch's own weights-only loader needs no allow-list for it
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
    plain = torch.load(path, weights_only=True)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in plain["model"].items())


# --------------------------------------------------------------- training checkpoints and resume


def _old_capture_rng_state():
    """``capture_rng_state`` as it was before this change: NumPy's state as its uint32 array."""
    import random

    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    from acfd.scenes.synth import write_dataset

    root = tmp_path_factory.mktemp("scenes")
    write_dataset(root, images=8, seed=5, size=(256, 160), progress=False)
    return root


def _train(data, out, **kw):
    from acfd.training.trainer import TrainOptions, train

    base = dict(
        data=str(data),
        out=str(out),
        preset="tiny",
        epochs=1,
        batch=4,
        size=128,
        workers=0,
        progress=False,
        seed=7,
        kernels="torch",
        max_iters=1,
    )
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(TrainOptions(**{**base, **kw}))
    finally:
        torch.set_num_threads(before)


def test_a_checkpoint_of_the_previous_save_code_still_resumes(scenes, tmp_path, monkeypatch):
    from acfd.training import trainer

    with monkeypatch.context() as patch:
        patch.setattr(trainer, "capture_rng_state", _old_capture_rng_state)
        _train(scenes, tmp_path / "old")
    last = tmp_path / "old" / "last.pt"
    assert "numpy.ndarray" in torch.serialization.get_unsafe_globals_in_checkpoint(last)  # really the old form
    state = read_training_state(last, "tiny")
    saved = state["rng"]["numpy"]
    assert isinstance(saved[1], np.ndarray) and saved[1].dtype == np.uint32
    np.random.seed(0)
    restore_rng_state(state["rng"])
    now = np.random.get_state()
    assert now[0] == saved[0] and np.array_equal(now[1], saved[1]) and now[2:] == saved[2:]
    resumed = _train(scenes, tmp_path / "old", epochs=2, max_iters=2, resume=True)
    assert resumed.status == "done" and resumed.iteration == 2


def test_new_checkpoints_are_plain_data(scenes, tmp_path):
    _train(scenes, tmp_path / "new")
    last = tmp_path / "new" / "last.pt"
    assert torch.serialization.get_unsafe_globals_in_checkpoint(last) == []
    keys = read_checkpoint(last)["rng"]["numpy"][1]
    assert isinstance(keys, torch.Tensor) and keys.shape == (624,)
