"""Synchronous gRPC client of the served ACFD ensemble (``tritonclient.grpc``).

Contract:

* ``DetectorClient(url, model="acfd", timeout_s, retries, backoff_s, compression)`` talks to one
  Triton Inference Server. The ensemble takes ``IMAGE`` (UINT8, the encoded image bytes, one image
  per request) and answers ``BOXES [N, 4]`` (x1, y1, x2, y2, original pixels) and ``SCORES [N]``.
  The request shape follows the model's config: ``[1, nbytes]`` when ``max_batch_size > 0``,
  ``[nbytes]`` otherwise (read once, on first use).
* ``detect(image)`` takes a path, encoded bytes, or a NumPy RGB ``uint8`` image (sent as PNG) and
  returns ``list[Detection]`` sorted by falling score. ``detect_many(images, concurrency)`` runs at
  most ``concurrency`` requests at a time and keeps the input order; ``stream(...)`` yields one
  ``DetectOutcome`` per image in order (detections or the error, and the request latency).
* Every call has a deadline (``timeout_s``, overridable per call): past it ``DetectTimeout`` is
  raised, never a hang. Only ``UNAVAILABLE`` answers are retried, ``retries`` times with
  exponential backoff (``backoff_s``, doubling).
* A timed-out inference is *abandoned*, not cancelled (unless ``cancel_on_timeout``): the caller
  gets ``DetectTimeout`` on time, the server finishes the request and its answer is dropped;
  ``close()`` waits up to ``drain_s`` for such calls. Triton 2.51, the server shipped here, can
  die of SIGSEGV when a gRPC deadline or cancel meets a request as it completes (issue 7368 of
  triton-inference-server/server, fixed in 24.12): seen here after 15 short-deadline requests.
* ``check_ready()`` says plainly what is wrong, in one line: ``ServerUnavailable`` (nothing
  answers at the address), ``ModelNotReady`` (the server runs but ``acfd`` is not loaded, with the
  server's reason). A request the server refuses raises, for that image only, ``InvalidRequest``
  (gRPC ``INVALID_ARGUMENT``: the caller's bytes, e.g. an undecodable image) or ``ServerFault``
  (``INTERNAL`` and other server-side codes); both are ``InferenceFailed`` and neither is retried.
  A local file that cannot be read raises ``ImageInputError``.
* ``compression`` is ``None``, ``"gzip"`` or ``"deflate"`` (gRPC message compression of requests).

The helpers below the exceptions are shared with ``acfd.clients.aio_client``.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import cv2
import numpy as np

from acfd.clients.detections import Detection, detections_from_arrays

DEFAULT_URL = "127.0.0.1:8001"
DEFAULT_MODEL = "acfd"
INPUT_NAME = "IMAGE"
BOXES_NAME = "BOXES"
SCORES_NAME = "SCORES"
COMPRESSIONS = ("gzip", "deflate")
MAX_BACKOFF_S = 5.0

ImageLike = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray]


class ClientError(RuntimeError):
    """Base of every client error; the message is one readable line."""


class ServerUnavailable(ClientError):
    """Nothing answers at the server address (not started, wrong port, shutting down)."""


class ModelNotReady(ClientError):
    """The server answers but the model is unknown or not loaded."""


class DetectTimeout(ClientError, TimeoutError):
    """No answer within the call's deadline."""


class InferenceFailed(ClientError):
    """The server refused or failed this one request (one of the two below, or a malformed answer)."""


class InvalidRequest(InferenceFailed, ValueError):
    """The server refused the request as the caller's mistake (gRPC ``INVALID_ARGUMENT``: bytes that
    are no image, too many pixels, a wrong data type). Sending it again gives the same answer."""


class ServerFault(InferenceFailed):
    """The server failed on a request it accepted (gRPC ``INTERNAL`` or another server-side code)."""


class ImageInputError(ClientError, ValueError):
    """A local image that cannot be read or encoded."""


@dataclass(frozen=True)
class DetectOutcome:
    """The result for one image of ``stream``: ``detections`` or ``error``, and the request latency."""

    index: int
    source: str
    detections: list[Detection] | None
    error: ClientError | None
    latency_s: float

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


# ---- shared helpers (sync and asyncio clients) --------------------------------------------------
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


def one_line(text: str | None) -> str:
    return " ".join(str(text or "").split())


def status_of(err: Exception) -> str:
    return (err.status() if callable(getattr(err, "status", None)) else "") or ""


def is_retryable(err: Exception) -> bool:
    """Only UNAVAILABLE is retried: the server may be starting up or a connection dropped."""
    return status_of(err) == "StatusCode.UNAVAILABLE"


def backoff_delay(attempt: int, backoff_s: float) -> float:
    return min(backoff_s * (2**attempt), MAX_BACKOFF_S)


def translate_error(err: Exception, *, url: str, model: str, source: str, timeout_s: float | None) -> ClientError:
    """A ``tritonclient`` exception to one of this module's errors, with one readable line."""
    status = status_of(err)
    message = getattr(err, "message", None)
    text = one_line(message() if callable(message) else str(err))
    if "unknown model" in text.lower() or status == "StatusCode.NOT_FOUND":
        return ModelNotReady(f"model {model!r} is not loaded on the server at {url} ({text})")
    if status == "StatusCode.UNAVAILABLE":
        low = text.lower()
        if "connection refused" in low:
            return ServerUnavailable(
                f"cannot reach the Triton server at {url} (connection refused); is `acfd serve` running there?"
            )
        if "failed to connect" in low or "dns resolution failed" in low:
            return ServerUnavailable(f"cannot reach the Triton server at {url} ({text})")
        return ServerUnavailable(f"the Triton server at {url} is unavailable ({text})")
    if status == "StatusCode.DEADLINE_EXCEEDED":
        return DetectTimeout(f"{source}: no answer from {url} within {timeout_s:g} s (timeout)")
    if status == "StatusCode.INVALID_ARGUMENT":
        return InvalidRequest(f"{source}: the server refused it as invalid input ({text})")
    return ServerFault(
        f"{source}: the server failed on it ({status.removeprefix('StatusCode.') or 'no status'}: {text})"
    )


def not_ready_reason(index: list[dict], model: str, url: str) -> ModelNotReady:
    """Why ``model`` is not ready, from the server's repository index (``as_json`` form)."""
    entries = [m for m in index if m.get("name") == model]
    if not entries:
        names = sorted({m.get("name", "?") for m in index})
        return ModelNotReady(
            f"the server at {url} has no model {model!r} in its repository (it has: {', '.join(names) or 'none'})"
        )
    entry = entries[-1]
    state = entry.get("state") or "not loaded"
    reason = one_line(entry.get("reason"))
    return ModelNotReady(
        f"model {model!r} on the server at {url} is not ready (state {state}{': ' + reason if reason else ''})"
    )


def check_compression(compression: str | None) -> str | None:
    if compression in (None, "", "none"):
        return None
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {COMPRESSIONS} or None, got {compression!r}")
    return compression


# ---- the client ---------------------------------------------------------------------------------
class ClientOptions:
    """Settings shared by the blocking and the asyncio client (checked once, here)."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        model: str = DEFAULT_MODEL,
        timeout_s: float = 30.0,
        retries: int = 3,
        backoff_s: float = 0.2,
        compression: str | None = None,
        min_score: float | None = 0.0,
        cancel_on_timeout: bool = False,
        drain_s: float = 30.0,
    ):
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.url = url
        self.model = model
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        self.compression = check_compression(compression)
        self.min_score = None if min_score is None else float(min_score)
        self.cancel_on_timeout = bool(cancel_on_timeout)
        self.drain_s = float(drain_s)

    def score_floor(self, spec: InputSpec, override: float | None = None) -> float:
        """The score detections must reach: ``override``, else ``min_score``, else (``min_score=None``)
        the served model's display threshold, else ``FALLBACK_MIN_SCORE``."""
        if override is not None:
            return float(override)
        if self.min_score is not None:
            return self.min_score
        return spec.display_threshold if spec.display_threshold is not None else FALLBACK_MIN_SCORE


class DetectorClient(ClientOptions):
    """Blocking client; thread-safe (``detect_many`` shares one gRPC channel across threads)."""

    def __init__(self, url: str = DEFAULT_URL, model: str = DEFAULT_MODEL, **options):
        """``options``: ``timeout_s``, ``retries``, ``backoff_s``, ``compression``, ``min_score``,
        ``cancel_on_timeout``, ``drain_s`` (see ``ClientOptions``)."""
        super().__init__(url, model, **options)
        import tritonclient.grpc as grpcclient

        self._client = grpcclient.InferenceServerClient(url)
        self._spec: InputSpec | None = None
        self._lock = threading.Lock()
        self._in_flight = 0  # inference calls sent and not answered (abandoned ones included)
        self._idle = threading.Condition()

    # ---- readiness -----------------------------------------------------------------------------
    def check_ready(self) -> InputSpec:
        """Raise ``ServerUnavailable`` / ``ModelNotReady`` with one line, else the model's input spec."""
        with self._lock:
            if self._spec is not None:
                return self._spec
            live = self._call(lambda: self._client.is_server_live(client_timeout=self.timeout_s), "server")
            if not live:
                raise ServerUnavailable(f"the Triton server at {self.url} answers but is not live (shutting down?)")
            if not self._call(lambda: self._client.is_model_ready(self.model, client_timeout=self.timeout_s), "server"):
                index = self._call(
                    lambda: self._client.get_model_repository_index(as_json=True, client_timeout=self.timeout_s),
                    "server",
                )
                raise not_ready_reason(index.get("models", []), self.model, self.url)
            config = self._call(
                lambda: self._client.get_model_config(self.model, as_json=True, client_timeout=self.timeout_s), "server"
            )
            self._spec = input_spec_from_config(config, self.model, self.url)
            return self._spec

    # ---- detection -----------------------------------------------------------------------------
    def detect(
        self, image: ImageLike, timeout_s: float | None = None, min_score: float | None = None
    ) -> list[Detection]:
        """Detections for one image (path, encoded bytes or NumPy RGB), in original pixels."""
        detections, _ = self.detect_timed(image, timeout_s=timeout_s, min_score=min_score)
        return detections

    def detect_timed(
        self,
        image: ImageLike,
        timeout_s: float | None = None,
        min_score: float | None = None,
        source: str | None = None,
    ) -> tuple[list[Detection], float]:
        """``detect`` plus the request's wall time in seconds (retries included, file reading not)."""
        source = source or image_source(image)
        data = encode_image(image, source)
        spec = self.check_ready()
        timeout = self.timeout_s if timeout_s is None else float(timeout_s)
        inputs, outputs = build_request(data, spec)
        started = time.perf_counter()
        result = self._call(lambda: self._infer_once(inputs, outputs, timeout, source), source, timeout)
        latency = time.perf_counter() - started
        return parse_result(result, source, self.score_floor(spec, min_score)), latency

    def stream(self, images: Iterable[ImageLike], concurrency: int = 4) -> Iterator[DetectOutcome]:
        """One ``DetectOutcome`` per image, in input order, at most ``concurrency`` requests in flight."""
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        pending: deque = deque()
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="acfd-detect") as pool:
            try:
                for index, image in enumerate(images):
                    pending.append(pool.submit(self._outcome, index, image))
                    if len(pending) >= 2 * concurrency:  # bounded read-ahead over a long iterable
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()
            finally:
                for future in pending:
                    future.cancel()

    def detect_many(
        self, images: Iterable[ImageLike], concurrency: int = 4, return_exceptions: bool = False
    ) -> list[list[Detection] | ClientError]:
        """Detections per image, in order. The first error is raised unless ``return_exceptions``."""
        results: list[list[Detection] | ClientError] = []
        for outcome in self.stream(images, concurrency):
            if outcome.error is not None and not return_exceptions:
                raise outcome.error
            results.append(outcome.detections if outcome.error is None else outcome.error)
        return results

    def _outcome(self, index: int, image: ImageLike) -> DetectOutcome:
        source = image_source(image, index)
        try:
            detections, latency = self.detect_timed(image, source=source)
        except ClientError as err:
            return DetectOutcome(index, source, None, err, 0.0)
        return DetectOutcome(index, source, detections, None, latency)

    # ---- plumbing ------------------------------------------------------------------------------
    def _infer_once(self, inputs: list, outputs: list, timeout: float, source: str):
        """One inference call; ``DetectTimeout`` after ``timeout`` (see the module notes on cancelling)."""
        answered = threading.Event()
        answer: list = []

        def on_answer(result, error) -> None:
            answer.append((result, error))
            answered.set()
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

        with self._idle:
            self._in_flight += 1
        try:
            call = self._client.async_infer(
                self.model,
                inputs,
                on_answer,
                outputs=outputs,
                client_timeout=timeout if self.cancel_on_timeout else None,
                compression_algorithm=self.compression,
            )
        except Exception:
            with self._idle:
                self._in_flight -= 1
            raise
        # with a gRPC deadline the answer is DEADLINE_EXCEEDED; allow it a moment to arrive
        if not answered.wait(timeout + (1.0 if self.cancel_on_timeout else 0.0)):
            if self.cancel_on_timeout:
                call.cancel()
            raise DetectTimeout(f"{source}: no answer from {self.url} within {timeout:g} s (timeout)")
        result, error = answer[0]
        if error is not None:
            raise error
        return result

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no inference call is in flight (abandoned ones included); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight <= 0, timeout=timeout_s)

    def _call(self, fn, source: str, timeout_s: float | None = None):
        from tritonclient.utils import InferenceServerException

        attempt = 0
        while True:
            try:
                return fn()
            except InferenceServerException as err:
                if is_retryable(err) and attempt < self.retries:
                    time.sleep(backoff_delay(attempt, self.backoff_s))
                    attempt += 1
                    continue
                raise translate_error(
                    err, url=self.url, model=self.model, source=source, timeout_s=timeout_s or self.timeout_s
                ) from None

    def close(self) -> None:
        """Close the channel, after waiting up to ``drain_s`` for calls still in flight (closing
        cancels them, which is what the abandon-on-timeout policy avoids)."""
        self.wait_idle(self.drain_s)
        self._client.close()

    def __enter__(self) -> "DetectorClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
