"""``acfd demo``, the README's first command, run end to end as a user runs it.

One subprocess run (module fixture) with its own real Triton server on free ports: a seeded ``tiny``
checkpoint made like ``conftest.make_checkpoint`` (test scales / 4), two generated scenes, one user
image and one corrupt file. Expected detections are computed here, independently: the checkpoint
exported here and run by the default engine in process (``InProcessPipeline``) on the same bytes;
the scenes are regenerated here from the documented seeding. ``--min-score 0`` keeps every box the
server sends (the untrained checkpoint scores just above the 0.08 threshold). The error tests run in
process.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from acfd.cli import main as acfd_main

REPO_ROOT = Path(__file__).resolve().parents[2]
BOX_ATOL = 1e-2  # pixels: the same export and engine in the server and here (thread counts may differ)
SCORE_ATOL = 1e-4
SEED = 7
SCENE_SIZES = [(640, 384), (960, 540)]  # (width, height) of scenes 0 and 1, as the demo documents


def _serving_conftest():
    """tests/serving/conftest.py as a module (its name clashes with tests/conftest.py on sys.path)."""
    name = "acfd_tests_serving_conftest"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("conftest.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(autouse=True)
def _restore_omp_policy(monkeypatch):
    """``acfd demo`` sets OMP_WAIT_POLICY when unset; in-process runs must not leak it to other tests."""
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    from acfd.serving.server import ServerError, find_tritonserver
    from acfd.scenes.synth import generate_scene

    try:
        find_tritonserver()
    except ServerError as err:
        pytest.fail(f"make setup installs this, so its absence is a broken setup, not a skip: {err}")
    helpers = _serving_conftest()
    root = tmp_path_factory.mktemp("demo")
    helpers.make_checkpoint(root / "tiny.pt", helpers.write_test_preset(root / "tiny_demo.yaml"))
    mine = root / "inputs" / "mine.jpg"
    mine.parent.mkdir()
    image, _ = generate_scene(np.random.default_rng([99, 0]), 352, 224)
    assert cv2.imwrite(str(mine), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    broken = root / "inputs" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)  # a PNG signature, then garbage
    out = root / "out"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "acfd",
            "demo",
            str(mine),
            str(broken),
            "--weights",
            str(root / "tiny.pt"),
            "--out",
            str(out),
            "--scenes",
            "2",
            "--seed",
            str(SEED),
            "--min-score",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=root,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((out / "summary.json").read_text())
    return {
        "done": done,
        "out": out,
        "summary": summary,
        "checkpoint": root / "tiny.pt",
        "mine": mine,
        "broken": broken,
    }


@pytest.fixture(scope="module")
def in_process(demo_run, tmp_path_factory):
    """Detections of the demo's checkpoint on encoded bytes, computed here: exported again (the export
    and its int8 calibration are deterministic) and run by the default engine in this process."""
    from acfd.inference.pipeline import InProcessPipeline
    from acfd.export.graph import export_model
    from acfd.export.quantize import quantize_export

    export = tmp_path_factory.mktemp("demo_export")
    export_model(demo_run["checkpoint"], export, progress=False)
    quantize_export(export)  # the default calibration (generated scenes, seed 0) the demo uses
    return InProcessPipeline(export, threads=1)


def _assert_same(record: dict, want: tuple[np.ndarray, np.ndarray]) -> None:
    boxes, scores = want
    got = record["detections"]
    assert len(got) == len(scores) > 0, f"{record['name']}: {len(got)} detections in the summary, {len(scores)} here"
    np.testing.assert_allclose([d["score"] for d in got], scores, rtol=0, atol=SCORE_ATOL, err_msg=record["name"])
    np.testing.assert_allclose([d["box"] for d in got], boxes, rtol=0, atol=BOX_ATOL, err_msg=record["name"])


@pytest.mark.server
def test_demo_runs_end_to_end_and_stops_its_server(demo_run):
    from acfd.serving.server import port_in_use

    out, summary, stdout = demo_run["out"], demo_run["summary"], demo_run["done"].stdout
    assert stdout.strip().splitlines()[-1].endswith(f"in {out.resolve()}")  # where the output went, last
    for step in (
        "[1/5] exported",
        "[2/5] model repository",
        "[3/5] server ready in",
        "[4/5] server stopped",
        "[5/5] timing",
    ):
        assert step in stdout, stdout
    names = [r["name"] for r in summary["images"]]
    assert names == ["scene-00.png", "scene-01.png", "mine.png", "broken.png"]
    answered = summary["images"][:3]
    for record, (width, height) in zip(answered, SCENE_SIZES + [(352, 224)]):
        assert record["error"] is None
        assert (record["width"], record["height"]) == (width, height)
        assert record["faces"] == len(record["detections"]) > 0
        assert record["server_ms"] > 0 and record["in_process_ms"] > 0
        annotated = cv2.imread(str(out / record["annotated"]))
        assert annotated is not None and annotated.shape == (height, width, 3)
    for record in answered[:2]:  # the scenes carry their drawn faces; "found" can never exceed them
        assert 0 <= record["labelled_found"] <= record["labelled_faces"]
    assert answered[2]["labelled_faces"] is None
    latency = summary["latency"]
    assert latency["images"] == 3
    assert latency["server_mean_ms"] == pytest.approx(np.mean([r["server_ms"] for r in answered]), abs=0.02)
    assert latency["ratio"] == pytest.approx(latency["server_mean_ms"] / latency["in_process_mean_ms"], rel=1e-2)
    assert sorted(p.name for p in (out / "images").iterdir()) == ["mine.png", "scene-00.png", "scene-01.png"]
    assert not (out / "export").exists() and not (out / "repo").exists()  # removed without --keep
    ports = summary["server"]["ports"]
    assert len(set(ports.values())) == 3
    assert not any(port_in_use("127.0.0.1", port) for port in ports.values())


@pytest.mark.server
def test_corrupt_file_is_reported_and_the_others_go_through(demo_run):
    record = demo_run["summary"]["images"][3]
    assert record["source"] == str(demo_run["broken"])
    assert record["faces"] is None and record["detections"] == [] and record["annotated"] is None
    assert str(demo_run["broken"]) in record["error"] and "\n" not in record["error"]
    assert "broken.png" in demo_run["done"].stdout  # the printed table names it too
    assert "Traceback" not in demo_run["done"].stdout + demo_run["done"].stderr


@pytest.mark.server
def test_summary_detections_equal_the_in_process_model(demo_run, in_process):
    from acfd.clients.grpc_client import encode_image
    from acfd.scenes.synth import generate_scene

    records = demo_run["summary"]["images"]
    _assert_same(records[2], in_process(demo_run["mine"].read_bytes()))
    for i, (width, height) in enumerate(SCENE_SIZES):  # the seeding the demo documents: default_rng([seed, i])
        scene, labels = generate_scene(np.random.default_rng([SEED, i]), width, height)
        _assert_same(records[i], in_process(encode_image(scene)))
        assert records[i]["labelled_faces"] == len(labels)


@pytest.mark.server
def test_annotated_image_shows_the_boxes(demo_run):
    from acfd.clients.detections import BOX_COLOR

    record = demo_run["summary"]["images"][2]
    annotated = cv2.cvtColor(cv2.imread(str(demo_run["out"] / record["annotated"])), cv2.COLOR_BGR2RGB)
    original = cv2.cvtColor(cv2.imread(str(demo_run["mine"])), cv2.COLOR_BGR2RGB)
    assert (annotated != original).any(axis=2).sum() > 0
    height, width = annotated.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in record["detections"][-1]["box"])  # the lowest score: drawn last
    x1, x2 = (min(max(v, 0), width - 1) for v in (x1, x2))
    y1, y2 = (min(max(v, 0), height - 1) for v in (y1, y2))
    left_edge = annotated[y1 : y2 + 1, x1]
    assert (left_edge == BOX_COLOR).all(axis=1).mean() > 0.5, "the box outline is not drawn in BOX_COLOR"


@pytest.mark.server
def test_demo_figure_makes_a_contact_sheet(demo_run, tmp_path):
    sheet = tmp_path / "demo.png"
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "demo_figure.py"), str(demo_run["out"]), str(sheet)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    image = cv2.imread(str(sheet))
    assert image is not None and image.shape[1] >= 3 * 300  # three images per row
    assert done.stdout.strip() == f"wrote {sheet} (3 images)"


def test_missing_weights_is_one_line(tmp_path, capsys):
    missing = tmp_path / "nowhere.pt"
    assert acfd_main(["demo", "--weights", str(missing), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err == f"acfd demo: --weights {missing}: no such checkpoint file\n"
    assert not (tmp_path / "out").exists()


def test_missing_default_model_says_how_to_pass_weights(tmp_path, capsys, monkeypatch):
    import acfd.demo

    monkeypatch.setattr(acfd.demo, "DEFAULT_WEIGHTS", tmp_path / "acfd_tiny_icartoonface.pt")
    assert acfd_main(["demo", "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("acfd demo: the default model is not there")
    assert "--weights PATH" in err


def test_refuses_to_fill_a_folder_it_did_not_make(tmp_path, capsys):
    weights = tmp_path / "any.pt"
    weights.write_bytes(b"not read: the folder is checked first")
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    assert acfd_main(["demo", "--weights", str(weights), "--out", str(precious)]) == 1
    err = capsys.readouterr().err
    assert (
        err
        == f"acfd demo: --out {precious}: folder exists and was not made by `acfd demo`; choose a new or empty folder\n"
    )
    assert sorted(p.name for p in precious.iterdir()) == ["notes.txt"]


@pytest.mark.server
def test_server_start_failure_is_the_servers_one_line_reason(tmp_path, capsys, monkeypatch):
    """A repository whose model cannot load: the demo stops with the server's reason, exit 1."""
    import acfd.demo
    from acfd.serving.server import ServerError, find_tritonserver

    try:
        find_tritonserver()
    except ServerError as err:
        pytest.fail(f"make setup installs this, so its absence is a broken setup, not a skip: {err}")

    def broken_repository(weights: Path, out: Path):  # stands in for export + `acfd repo`
        (out / "repo" / "acfd" / "1").mkdir(parents=True)
        (out / "repo" / "acfd" / "config.pbtxt").write_text(
            'backend: "python"\nmax_batch_size: 0\n'
            'input [ { name: "IMAGE" data_type: TYPE_UINT8 dims: [ -1 ] } ]\n'
            'output [ { name: "SCORES" data_type: TYPE_FP32 dims: [ -1 ] } ]\n'
        )
        (out / "repo" / "acfd" / "1" / "model.py").write_text(
            "class TritonPythonModel:\n"
            "    def initialize(self, args):\n"
            "        raise RuntimeError('broken on purpose')\n"
        )
        from acfd.training.config import load_preset

        return load_preset("tiny")  # what the export would have said

    monkeypatch.setattr(acfd.demo, "export_and_build", broken_repository)
    weights = tmp_path / "unused.pt"
    weights.write_bytes(b"not read: export is replaced")
    assert acfd_main(["demo", "--weights", str(weights), "--out", str(tmp_path / "out"), "--scenes", "1"]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("acfd demo: the server did not start: model 'acfd' failed to load: ")
    assert "broken on purpose" in err
