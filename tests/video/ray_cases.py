"""``acfd predict --ray`` on a local Ray (2 CPUs, started once for the module) against a local run.

Two generated videos cut in chunks that do not line up with their scene cuts, and a folder of
images (one broken): detections, tracks, crops and summary equal a single-process run's. A worker
killed mid-chunk (``ACFD_RAY_FAULTS``) is replaced and its chunk retried; a chunk that keeps
failing stops the job in one line, and the rerun resumes it. Bad inputs and bad addresses stay one
line each.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from video_outputs import same_outputs

from acfd.cli import main as acfd_main

ray = pytest.importorskip("ray", reason="the cluster extra (pip install 'acfd[cluster]') is not installed")


@pytest.fixture(scope="module")
def faults(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("faults")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"ACFD_RAY_FAULTS": str(folder)}})  # fmt: skip
    yield folder
    ray.shutdown()


def predict(capsys, *args) -> tuple[int, str]:
    code = acfd_main(["predict", *map(str, args)])
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def local_run(export_dir, videos, images, tmp_path_factory) -> tuple[Path, list]:
    args = [videos.folder, images, "--export", export_dir, "--track", "--save-crops", "--threads", "1"]
    out = tmp_path_factory.mktemp("local") / "out"
    assert acfd_main(["predict", *map(str, args), "--out", str(out)]) == 1  # the broken image
    return out, args


def test_ray_outputs_equal_a_local_run(faults, local_run, tmp_path, capsys):
    want, args = local_run
    code, err = predict(capsys, *args, "--out", tmp_path / "ray", "--ray", "--chunk-frames", "5")
    assert code == 1 and "on 2 Ray workers" in err
    assert len([line for line in err.splitlines() if "broken.png" in line]) == 1
    same_outputs(tmp_path / "ray", want)
    assert json.loads((tmp_path / "ray" / "timing.json").read_text())["ray"] is True


def test_a_worker_that_dies_is_replaced_and_its_chunk_retried(faults, local_run, tmp_path, capsys):
    want, args = local_run
    (faults / "crash").write_text("")
    code, err = predict(capsys, *args, "--out", tmp_path / "ray", "--ray", "--chunk-frames", "7")
    assert (faults / "crash.taken").is_file()  # a worker did die
    assert code == 1
    same_outputs(tmp_path / "ray", want)


def test_a_chunk_that_keeps_failing_stops_the_job_and_a_rerun_resumes(faults, local_run, tmp_path, capsys):
    from acfd.cluster.ray_predict import RETRIES

    want, args = local_run
    for k in range(RETRIES + 2):  # more crashes than one worker has lives
        (faults / f"crash{k:02d}").write_text("")
    try:
        code, err = predict(
            capsys, *args, "--out", tmp_path / "ray", "--ray", "--ray-workers", "1", "--chunk-frames", "7"
        )
    finally:
        for path in faults.iterdir():
            path.unlink()
    assert code == 1 and "Traceback" not in err
    lines = [line for line in err.splitlines() if "failed on Ray" in line]
    assert len(lines) == 1 and "rerun the same command to resume" in lines[0], err
    assert not (tmp_path / "ray" / "summary.json").exists()
    code, err = predict(capsys, *args, "--out", tmp_path / "ray", "--ray", "--chunk-frames", "7")
    assert code == 1
    same_outputs(tmp_path / "ray", want)


def test_bad_inputs_and_bad_addresses_are_one_line_each(faults, export_dir, videos, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "corrupt.mp4").write_bytes(bytes(range(256)) * 16)
    (bad / "empty.mp4").write_bytes(b"")
    (bad / "torn.png").write_bytes(b"\x89PNG\r\n\x1a\n torn")
    args = [bad, videos.paths[0], "--export", export_dir, "--no-annotate", "--end", "5", "--track"]
    results = {}
    for mode, extra in (("local", []), ("ray", ["--ray", "--chunk-frames", "2"])):
        code, err = predict(capsys, *args, "--out", tmp_path / mode, *extra)
        assert code == 1 and "Traceback" not in err
        results[mode] = sorted(line for line in err.splitlines() if str(bad) in line)
        assert len(results[mode]) == 3
    assert results["ray"] == results["local"]
    same_outputs(tmp_path / "ray", tmp_path / "local")
    addresses = (("127.0.0.1:9", "cannot reach a Ray cluster at 127.0.0.1:9"),
                 ("ray://127.0.0.1:9", "cannot reach a Ray cluster"), ("nowhere", "say host:port"))  # fmt: skip
    for address, needle in addresses:
        code, err = predict(capsys, videos.paths[0], "--export", export_dir, "--out", tmp_path / "x", "--ray", address)
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
