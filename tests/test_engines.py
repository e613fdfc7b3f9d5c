"""CPU engines (``acfd.inference.engines``) against the float32 reference, on the embedded model.

The embedded default (a trained ``mid`` model) is exported here with an int8 model calibrated on a
few generated scenes; each engine's detections on other generated scenes are compared with ONNX
Runtime float32's, with the tolerances stated in ``TOLERANCES``: every reference detection scoring
at least 0.3 has a detection of the engine covering it (IoU) whose score is within the stated
difference, for the stated share of them. Measured on this set (29 reference detections): bf16 27
at IoU >= 0.99 with scores within 0.003, the other two at 0.9 and 0.73 (near-duplicates NMS
resolved the other way); int8 most at IoU >= 0.9, a few near 0.75, scores within 0.13. What each
engine costs in hold-out mAP is in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from acfd.inference import engines
from acfd.inference.engines import ENGINES, EngineError, open_engine
from acfd.inference.manifest import ManifestError, read_manifest
from acfd.inference.pipeline import InProcessPipeline

# engine: (least IoU with the reference box, largest score difference, share of reference boxes held to it)
TOLERANCES = {
    "openvino": (0.95, 0.01, 0.9),
    "onnxruntime-int8": (0.5, 0.2, 0.9),
    "openvino-int8": (0.5, 0.2, 0.9),
}
REFERENCE_MIN_SCORE = 0.3


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    from acfd.export.graph import export_model
    from acfd.export.quantize import generated_images, quantize_export
    from acfd.weights import DEFAULT_WEIGHTS

    out = tmp_path_factory.mktemp("engines") / "export"
    export_model(DEFAULT_WEIGHTS, out, progress=False)
    quantize_export(out, generated_images(4, seed=1))
    return out


@pytest.fixture(scope="module")
def scenes() -> list[bytes]:
    from acfd.scenes.synth import generate_scene

    encoded = []
    for i in range(3):
        image, _ = generate_scene(np.random.default_rng((5, i)), 480, 288)
        encoded.append(cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes())
    return encoded


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lo, hi = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    area = lambda z: np.prod(z[:, 2:] - z[:, :2], axis=1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def test_manifest_names_the_int8_model(export):
    manifest = read_manifest(export)
    assert manifest.int8["file"] == "model.int8.onnx" and (export / "model.int8.onnx").is_file()
    assert manifest.int8["calibration"] == {"source": "generated scenes", "images": 4, "inputs": 12}


@pytest.mark.parametrize("engine", sorted(TOLERANCES))
def test_engine_detections_match_float32(export, scenes, engine):
    min_iou, max_score_diff, share = TOLERANCES[engine]
    reference = InProcessPipeline(export, engine="onnxruntime", threads=1)
    candidate = InProcessPipeline(export, engine=engine, threads=1)
    held, total = 0, 0
    for data in scenes:
        want_boxes, want_scores = reference(data)
        boxes, scores = candidate(data)
        assert boxes.dtype == np.float32 and scores.dtype == np.float32 and np.all(np.diff(scores) <= 0)
        strong = want_scores >= REFERENCE_MIN_SCORE
        if not strong.any():
            continue
        assert len(scores), f"{engine}: no detections where float32 has {int(strong.sum())}"
        overlap = box_iou(want_boxes[strong], boxes)
        best = overlap.argmax(axis=1)
        ok = (overlap.max(axis=1) >= min_iou) & (np.abs(want_scores[strong] - scores[best]) <= max_score_diff)
        held, total = held + int(ok.sum()), total + int(strong.sum())
    assert total >= 5, "the embedded model should find faces on the generated scenes"
    assert held >= share * total, f"{engine}: {held} of {total} reference detections within tolerance"


def test_openvino_float32_equals_onnxruntime_raw_outputs(export):
    manifest = read_manifest(export)
    pixels = np.random.default_rng(0).integers(0, 256, (2, 96, 160, 3), dtype=np.uint8)
    want = open_engine(export, manifest, "onnxruntime", threads=1, warm_up=False)(pixels)
    got = open_engine(export, manifest, "openvino", threads=1, warm_up=False, precision="f32")(pixels)
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=1e-4)
    np.testing.assert_allclose(got[1], want[1], rtol=0, atol=1e-2)


def test_openvino_without_bf16_falls_back_to_float32_with_one_line(export, monkeypatch):
    monkeypatch.setattr(engines, "openvino_has_bf16", lambda: False)
    engine = open_engine(export, read_manifest(export), "openvino", threads=1, warm_up=False)
    assert engine.precision == "fp32"
    assert "no bf16 support" in engine.note and "\n" not in engine.note


def test_openvino_compiles_each_shape_once_and_returns_fresh_arrays(export):
    engine = open_engine(export, read_manifest(export), "openvino", threads=1, warm_up=False)
    a = np.zeros((1, 64, 96, 3), np.uint8)
    first = engine(a)
    second = engine(np.full((1, 64, 96, 3), 255, np.uint8))
    assert len(engine.compiled) == 1
    assert not np.shares_memory(first[0], second[0])  # the request's buffers are reused; results are copies
    engine(np.zeros((2, 64, 96, 3), np.uint8))
    assert len(engine.compiled) == 2


@pytest.mark.parametrize(
    "pixels,needle",
    [
        (np.zeros((1, 64, 96, 3), np.float32), "must be uint8 pixels"),
        (np.zeros((64, 96, 3), np.uint8), "want [B, H, W, 3]"),
        (np.zeros((1, 3, 64, 96), np.uint8), "want [B, H, W, 3]"),
        (np.zeros((0, 64, 96, 3), np.uint8), "want [B, H, W, 3]"),
    ],
)
@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_bad_input_is_a_clear_error(export, engine, pixels, needle):
    runner = open_engine(export, read_manifest(export), engine, threads=1, warm_up=False)
    with pytest.raises(EngineError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        runner(pixels)


def test_missing_int8_model_and_unknown_engine(export, tmp_path):
    import shutil

    plain = tmp_path / "plain"
    shutil.copytree(export, plain)
    manifest = read_manifest(plain).replace(int8=None)
    manifest.write(plain)
    with pytest.raises(EngineError, match="no int8 model .*acfd export --int8"):
        open_engine(plain, manifest, "openvino-int8")
    with pytest.raises(EngineError, match="choose one of"):
        open_engine(plain, manifest, "tensorflow")
    (plain / "model.onnx").unlink()
    with pytest.raises(EngineError, match="model.onnx: model file of engine onnxruntime is missing"):
        open_engine(plain, manifest, "onnxruntime")


def test_manifest_of_the_old_format_is_refused(export, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    manifest = json.loads((export / "export.json").read_text())
    del manifest["format_version"]
    (old / "export.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match="export format 1, this acfd reads format 2"):
        read_manifest(old)
    (old / "export.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        read_manifest(old)


def test_default_engine_is_int8_openvino_with_a_fallback_line(export):
    manifest = read_manifest(export)
    assert engines.choose_engine(manifest) == ("openvino-int8", "")
    assert engines.choose_engine(manifest, "onnxruntime") == ("onnxruntime", "")
    engine, note = engines.choose_engine(manifest.replace(int8=None))
    assert engine == "openvino" and "no int8 model" in note and "\n" not in note
    assert InProcessPipeline(export, threads=1).engine.name == "openvino-int8"


@pytest.mark.parametrize(
    "change,needle",
    [
        (lambda m: m.pop("test_scales"), "test_scales: missing"),
        (lambda m: m.update(test_scales=[[288, "387"]]), "test_scales[0]: expected a (height, width) pair"),
        (lambda m: m["postprocess"].update(nms_iou=1.5), "postprocess.nms_iou: expected a number in [0, 1]"),
        (
            lambda m: m["postprocess"].update(max_detections="100"),
            "postprocess.max_detections: expected a positive integer",
        ),
        (lambda m: m["onnx"].update(input_layout="NCHW"), "onnx.input_layout: expected one of ['NHWC']"),
        (lambda m: m["onnx"].pop("file"), "onnx.file: missing"),
        (lambda m: m.update(int8={"calibration": {}}), "int8: expected null or an object naming its file"),
        (lambda m: m.update(format_version=3), "export format 3, this acfd reads format 2"),
    ],
)
def test_a_wrong_or_missing_field_fails_at_load_naming_it(export, tmp_path, change, needle):
    data = json.loads((export / "export.json").read_text())
    change(data)
    (tmp_path / "export.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError) as info:
        read_manifest(tmp_path)
    assert (
        needle in str(info.value) and str(tmp_path / "export.json") in str(info.value) and "\n" not in str(info.value)
    )


def test_manifest_round_trips_through_the_dataclass(export, tmp_path):
    manifest = read_manifest(export)
    assert manifest.to_dict() == json.loads((export / "export.json").read_text())
    manifest.write(tmp_path)
    assert read_manifest(tmp_path) == manifest


def test_every_engine_is_tested():
    assert set(TOLERANCES) | {"onnxruntime"} == set(ENGINES)
