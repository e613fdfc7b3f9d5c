"""The GPU trip's pieces that need no device: weights split and restored bit-exact, what travels, what returns."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from file_modules import load_script

ROOT = Path(__file__).resolve().parents[1]


trip_weights = load_script("trip_weights")
gpu_trip = load_script("gpu_trip")


@pytest.mark.parametrize("part_mib", [15.5, 0.01])
def test_weights_split_and_restored_bit_exact(tmp_path, part_mib):
    state = {"w": torch.randn(64, 64), "b": torch.arange(10, dtype=torch.float16)}
    torch.save(state, tmp_path / "weights.pt")
    original = (tmp_path / "weights.pt").read_bytes()
    assert (
        trip_weights.main(["split", str(tmp_path / "weights.pt"), str(tmp_path / "back"), "--part-mib", str(part_mib)])
        == 0
    )
    parts = sorted((tmp_path / "back").glob("weights.pt.part*"))
    assert all(p.stat().st_size <= part_mib * 2**20 for p in parts) and (len(parts) > 1) == (part_mib < 1)
    assert trip_weights.main(["restore", str(tmp_path / "back"), str(tmp_path / "restored.pt")]) == 0
    assert (tmp_path / "restored.pt").read_bytes() == original
    loaded = torch.load(tmp_path / "restored.pt")
    assert torch.equal(loaded["w"], state["w"]) and torch.equal(loaded["b"], state["b"])


def test_restore_refuses_an_altered_or_missing_part(tmp_path, capsys):
    (tmp_path / "w.pt").write_bytes(bytes(range(256)) * 100)
    trip_weights.main(["split", str(tmp_path / "w.pt"), str(tmp_path / "back"), "--part-mib", "0.01"])
    part = tmp_path / "back" / "w.pt.part01"
    data = bytearray(part.read_bytes())
    data[0] ^= 1
    part.write_bytes(bytes(data))
    assert trip_weights.main(["restore", str(tmp_path / "back"), str(tmp_path / "r.pt")]) == 1
    assert "w.pt.part01: altered" in capsys.readouterr().err and not (tmp_path / "r.pt").exists()
    part.unlink()
    assert trip_weights.main(["restore", str(tmp_path / "back"), str(tmp_path / "r.pt")]) == 1
    assert "missing part" in capsys.readouterr().err


def test_split_refuses_parts_over_16_mib(tmp_path, capsys):
    (tmp_path / "w.pt").write_bytes(b"x")
    assert trip_weights.main(["split", str(tmp_path / "w.pt"), str(tmp_path / "o"), "--part-mib", "17"]) == 1
    assert "a part must be 1 byte to 16 MiB" in capsys.readouterr().err


def test_travelling_files_are_the_git_view_plus_carried_folders(tmp_path):
    repo = tmp_path / "repo"
    (repo / "travel" / "icf").mkdir(parents=True)
    (repo / ".gitignore").write_text("/travel/\n.venv/\n")
    (repo / "a.py").write_text("x")
    (repo / "new.txt").write_text("y")
    (repo / ".venv").mkdir()
    (repo / ".venv" / "big").write_text("z")
    (repo / "travel" / "icf" / "img.webp").write_bytes(b"w")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "a.py", ".gitignore"], check=True)
    files = sorted(str(p) for p in gpu_trip.travelling_files(repo, ["travel"]))
    assert files == [".gitignore", "a.py", "new.txt", "travel/icf/img.webp"]
    assert sorted(str(p) for p in gpu_trip.travelling_files(repo, [])) == [".gitignore", "a.py", "new.txt"]


def test_a_failed_step_is_recorded_and_the_trip_goes_on(tmp_path, monkeypatch):
    args = gpu_trip.main.__globals__["argparse"].Namespace(
        out=str(tmp_path / "out"), work=str(tmp_path / "work"), minutes=1.0, cpu=True, python=sys.executable
    )
    trip = gpu_trip.Trip(args)

    def broken():
        raise RuntimeError("no CUDA here")

    trip.step("first", broken)
    trip.step("second", lambda: {"figure": 1})
    (tmp_path / "out" / "weights").mkdir()
    for k in range(8):
        (tmp_path / "out" / "weights" / f"w.part{k:02d}").write_bytes(b"p")
    assert trip.finish() == 1
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["steps"]["first"]["status"] == "failed" and "no CUDA here" in results["steps"]["first"]["error"]
    assert results["steps"]["second"] == {"status": "ok", "figure": 1, "seconds": results["steps"]["second"]["seconds"]}
    assert any("files in OUT" in p for p in results["returns"]["problems"])


def test_the_trip_ships_its_model_at_the_embedded_defaults_test_scales():
    """Same network, same input sizes: the GPU-trained model would serve at the default's CPU latency."""
    from acfd.training.checkpoint import read_checkpoint
    from acfd.weights import DEFAULT_WEIGHTS

    scales = read_checkpoint(DEFAULT_WEIGHTS)["preset"]["inference"]["test_scales"]
    assert gpu_trip.SHIP_SCALES == tuple(f"{h}x{w}" for h, w in scales)
