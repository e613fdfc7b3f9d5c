"""What travels between the clients and the served ensemble: images in, detections out.

Contract:

* ``encode_image(image)`` gives the bytes to send: a file's content, encoded bytes as given, or a
  NumPy ``uint8`` image (RGB ``[H, W, 3]``, RGBA ``[H, W, 4]`` or gray ``[H, W]``) as PNG; an
  unreadable file or an unusable array raises ``ImageInputError``.
* ``input_spec_from_config(config)`` checks the model's config has the ACFD interface (UINT8
  ``IMAGE`` in, ``BOXES`` and ``SCORES`` out) and reads how a request is shaped (``[1, nbytes]``
  when ``max_batch_size > 0``) and the model's published display threshold.
* ``build_request`` / ``parse_result`` make the ``IMAGE`` input and read ``BOXES`` / ``SCORES``.
* ``DetectOutcome`` is one image's result in a stream: detections or the error, the latency, the
  server that answered and the attempts it took.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import cv2
import numpy as np

from acfd.clients.detections import Detection, detections_from_arrays
from acfd.clients.errors import ClientError, ImageInputError, InferenceFailed, ModelNotReady

DEFAULT_URL = "127.0.0.1:8001"
DEFAULT_MODEL = "acfd"
INPUT_NAME = "IMAGE"
BOXES_NAME = "BOXES"
SCORES_NAME = "SCORES"
COMPRESSIONS = ("gzip", "deflate")

ImageLike = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray]


@dataclass(frozen=True)
class DetectOutcome:
    """The result for one image of ``stream``: ``detections`` or ``error``, and the request latency."""

    index: int
    source: str
    detections: list[Detection] | None
    error: ClientError | None
    latency_s: float
    server: str | None = None  # the URL that answered (None when none did)
    attempts: int = 1  # requests sent for this image, retries included

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class InputSpec:
    """How a request for the model must be shaped (from its config)."""

    batched: bool  # max_batch_size > 0: a leading batch axis of 1
    # the served model's own display threshold: the ensemble config's parameter "display_threshold",
    # written by `acfd repo` from the export manifest (None when the server does not say)
    display_threshold: float | None = None

    def shape(self, nbytes: int) -> list[int]:
        return [1, nbytes] if self.batched else [nbytes]


# ``min_score=None`` against a server that does not publish its model's display threshold
FALLBACK_MIN_SCORE = 0.5


def image_source(image: ImageLike, index: int | None = None) -> str:
    """A short name for messages: the path, or what kind of value it was."""
    if isinstance(image, (str, os.PathLike)):
        return str(image)
    kind = "array" if isinstance(image, np.ndarray) else "bytes"
    return f"{kind}[{index}]" if index is not None else kind


def encode_image(image: ImageLike, source: str | None = None) -> bytes:
    """The bytes to send: a file's content, encoded bytes as given, or a NumPy image as PNG.

    NumPy images are ``uint8`` RGB ``[H, W, 3]``, RGBA ``[H, W, 4]`` or gray ``[H, W]``.
    """
    name = source or image_source(image)
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if path.is_dir():
            raise ImageInputError(f"{path}: is a folder, not an image file")
        try:
            data = path.read_bytes()
        except OSError as err:
            raise ImageInputError(f"{path}: cannot read ({err.strerror or err})") from err
    elif isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
    elif isinstance(image, np.ndarray):
        data = _png_bytes(image, name)
    else:
        raise ImageInputError(f"{name}: unsupported image type {type(image).__name__} (give a path, bytes or an array)")
    if not data:
        raise ImageInputError(f"{name}: empty (0 bytes)")
    return data


def _png_bytes(image: np.ndarray, name: str) -> bytes:
    if image.dtype != np.uint8:
        raise ImageInputError(f"{name}: NumPy images must be uint8, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    elif image.ndim != 2:
        raise ImageInputError(
            f"{name}: NumPy images must be [H, W, 3] RGB, [H, W, 4] RGBA or [H, W], got {list(image.shape)}"
        )
    if image.size == 0:
        raise ImageInputError(f"{name}: empty image {list(image.shape)}")
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise ImageInputError(f"{name}: cannot encode as PNG")
    return buf.tobytes()


def input_spec_from_config(config: dict, model: str, url: str) -> InputSpec:
    """Check the model's config (``get_model_config(as_json=True)``) has the ACFD interface."""
    config = config.get("config", config)
    inputs = {i.get("name"): i for i in config.get("input", [])}
    outputs = {o.get("name") for o in config.get("output", [])}
    image = inputs.get(INPUT_NAME)
    if image is None or image.get("data_type") != "TYPE_UINT8":
        raise ModelNotReady(
            f"model {model!r} at {url} has no UINT8 input {INPUT_NAME!r} (inputs: {sorted(inputs)}): "
            "not the ACFD ensemble"
        )
    missing = {BOXES_NAME, SCORES_NAME} - outputs
    if missing:
        raise ModelNotReady(f"model {model!r} at {url} lacks outputs {sorted(missing)}: not the ACFD ensemble")
    raw = (config.get("parameters") or {}).get("display_threshold", {}).get("string_value")
    try:
        threshold = float(raw) if raw is not None else None
    except ValueError:
        threshold = None
    return InputSpec(batched=int(config.get("max_batch_size", 0) or 0) > 0, display_threshold=threshold)


def build_request(data: bytes, spec: InputSpec) -> tuple[list, list]:
    """The ``IMAGE`` input tensor and the requested ``BOXES``/``SCORES`` outputs."""
    import tritonclient.grpc as grpcclient

    array = np.frombuffer(data, dtype=np.uint8).reshape(spec.shape(len(data)))
    tensor = grpcclient.InferInput(INPUT_NAME, list(array.shape), "UINT8")
    tensor.set_data_from_numpy(array)
    return [tensor], [grpcclient.InferRequestedOutput(BOXES_NAME), grpcclient.InferRequestedOutput(SCORES_NAME)]


def parse_result(result: Any, source: str, min_score: float = 0.0) -> list[Detection]:
    """An ``InferResult`` to detections; a malformed answer raises ``InferenceFailed``."""
    boxes, scores = result.as_numpy(BOXES_NAME), result.as_numpy(SCORES_NAME)
    if boxes is None or scores is None:
        raise InferenceFailed(f"{source}: the server's answer lacks {BOXES_NAME} or {SCORES_NAME}")
    try:
        return detections_from_arrays(boxes, scores, min_score)
    except ValueError as err:
        raise InferenceFailed(f"{source}: malformed answer ({err})") from None


def check_compression(compression: str | None) -> str | None:
    if compression in (None, "", "none"):
        return None
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {COMPRESSIONS} or None, got {compression!r}")
    return compression
