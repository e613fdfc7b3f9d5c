"""Synchronous gRPC client of the served ACFD ensemble (``tritonclient.grpc``), over one or several servers.

Contract:

* ``DetectorClient(url, model="acfd", timeout_s, retries, deadline_s, backoff_s, compression)``
  talks to one Triton Inference Server, or to several: ``url`` may be a list of ``host:port``
  addresses or one string with commas. Each request goes to the ready server with the fewest
  requests outstanding (``acfd.clients.pool``); a server that fails is skipped for a cool-down and
  asked whether it is ready before it gets traffic again.
* The ensemble takes ``IMAGE`` (UINT8, the encoded image bytes, one image per request) and answers
  ``BOXES [N, 4]`` (x1, y1, x2, y2, original pixels) and ``SCORES [N]``. The request shape follows
  the model's config: ``[1, nbytes]`` when ``max_batch_size > 0``, ``[nbytes]`` otherwise (read
  once, on first use, from the first server that is ready).
* ``detect(image)`` takes a path, encoded bytes, or a NumPy RGB ``uint8`` image (sent as PNG) and
  returns ``list[Detection]`` sorted by falling score. ``detect_many(images, concurrency)`` runs at
  most ``concurrency`` requests at a time and keeps the input order; ``stream(...)`` yields one
  ``DetectOutcome`` per image in order (detections or the error, the latency, the server that
  answered and the attempts it took): every image exactly once, whatever was retried.
* Inference is idempotent, so an attempt that fails in a way a repair or another server can cure
  (``acfd.clients.errors.inference_retryable``: UNAVAILABLE, INTERNAL, NOT_FOUND, no answer within
  ``timeout_s``, ...) is tried again, on the least busy ready server, up to ``retries`` times and
  within ``deadline_s`` of the first attempt, with exponential backoff (``backoff_s``, doubling)
  when no server is ready. A caller's mistake (``INVALID_ARGUMENT``) is never retried.
* Every attempt has a deadline (``timeout_s``, overridable per call): past it the attempt counts as
  failed, never a hang. A timed-out attempt is *abandoned*, not cancelled (unless
  ``cancel_on_timeout``): the server finishes it and its answer is dropped; ``close()`` waits up to
  ``drain_s`` for such calls. Triton 2.51, the server shipped here, can die of SIGSEGV when a gRPC
  deadline or cancel meets a request as it completes (issue 7368 of
  triton-inference-server/server, fixed in 24.12): seen here after 15 short-deadline requests.
* ``check_ready()`` says plainly what is wrong, in one line, when no server can take requests:
  ``ServerUnavailable`` (nothing answers), ``ModelNotReady`` (the server runs but ``acfd`` is not
  loaded, with the server's reason). Once retries are spent, a request raises for that image only
  ``InvalidRequest`` (gRPC ``INVALID_ARGUMENT``), ``ServerFault`` (``INTERNAL`` and other
  server-side codes), ``DetectTimeout`` or ``ServerUnavailable``. A local file that cannot be read
  raises ``ImageInputError``.
* ``compression`` is ``None``, ``"gzip"`` or ``"deflate"`` (gRPC message compression of requests).

The errors live in ``acfd.clients.errors``, the request and answer in ``acfd.clients.request``;
both are re-exported here.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

from acfd.clients.detections import Detection
from acfd.clients.errors import (  # noqa: F401 (re-exported: the client's public names)
    MAX_BACKOFF_S,
    ClientError,
    DetectTimeout,
    ImageInputError,
    InferenceFailed,
    InvalidRequest,
    ModelNotReady,
    ServerFault,
    ServerUnavailable,
    backoff_delay,
    control_retryable,
    inference_retryable,
    is_retryable,
    not_ready_reason,
    one_line,
    status_of,
    translate_error,
)
from acfd.clients.pool import Attempts, Endpoint, ServerPool
from acfd.clients.request import (  # noqa: F401 (re-exported)
    BOXES_NAME,
    COMPRESSIONS,
    DEFAULT_MODEL,
    DEFAULT_URL,
    FALLBACK_MIN_SCORE,
    INPUT_NAME,
    SCORES_NAME,
    DetectOutcome,
    ImageLike,
    InputSpec,
    build_request,
    check_compression,
    encode_image,
    image_source,
    input_spec_from_config,
    parse_result,
)

CHECK_RETRIES = 3  # check_ready: retries of a server that does not answer (it may be starting up)


class ClientOptions:
    """Settings shared by the blocking and the asyncio client (checked once, here)."""

    def __init__(
        self,
        url: str | Iterable[str] = DEFAULT_URL,
        model: str = DEFAULT_MODEL,
        timeout_s: float = 30.0,
        retries: int = 8,
        backoff_s: float = 0.2,
        compression: str | None = None,
        min_score: float | None = 0.0,
        cancel_on_timeout: bool = False,
        drain_s: float = 30.0,
        deadline_s: float = 120.0,
    ):
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        if deadline_s <= 0:
            raise ValueError(f"deadline_s must be > 0, got {deadline_s}")
        self.pool = ServerPool(url, backoff_s)
        self.urls = [e.url for e in self.pool.endpoints]
        self.url = ",".join(self.urls)
        self.model = model
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.deadline_s = float(deadline_s)
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

    def _no_server(self, last: ClientError | None, attempts: int, started: float) -> ClientError:
        """The error to raise once retries or the deadline are spent."""
        spent = f"gave up after {attempts} attempt{'s' if attempts != 1 else ''} in {time.monotonic() - started:.1f} s"
        if last is None:
            return ServerUnavailable(f"no server of {self.url} became ready ({spent})")
        return type(last)(f"{last} ({spent})") if attempts > 1 else last

    def _spec_from_checks(self, errors: list[ClientError]) -> ClientError:
        """The one error ``check_ready`` raises when no server is ready."""
        if len(errors) == 1:
            return errors[0]
        kind = ModelNotReady if all(isinstance(e, ModelNotReady) for e in errors) else ServerUnavailable
        return kind(f"no server is ready: {'; '.join(str(e) for e in errors)}")


class DetectorClient(ClientOptions):
    """Blocking client; thread-safe (``detect_many`` shares one gRPC channel per server across threads)."""

    def __init__(self, url: str | Iterable[str] = DEFAULT_URL, model: str = DEFAULT_MODEL, **options):
        """``options``: ``timeout_s``, ``retries``, ``deadline_s``, ``backoff_s``, ``compression``,
        ``min_score``, ``cancel_on_timeout``, ``drain_s`` (see ``ClientOptions``)."""
        super().__init__(url, model, **options)
        import tritonclient.grpc as grpcclient

        for endpoint in self.pool.endpoints:
            endpoint.client = grpcclient.InferenceServerClient(endpoint.url)
        self._client = self.pool.endpoints[0].client
        self._spec: InputSpec | None = None
        self._lock = threading.Lock()
        self._in_flight = 0  # inference calls sent and not answered (abandoned ones included)
        self._idle = threading.Condition()

    # ---- readiness -----------------------------------------------------------------------------
    def check_ready(self) -> InputSpec:
        """Raise ``ServerUnavailable`` / ``ModelNotReady`` with one line unless a server is ready;
        the model's input spec."""
        with self._lock:
            if self._spec is not None:
                return self._spec
            errors: list[ClientError] = []
            retries = min(self.retries, CHECK_RETRIES) if len(self.urls) == 1 else 0
            for endpoint in self.pool.endpoints:
                try:
                    self._spec = self._check(endpoint, retries)
                    return self._spec
                except ClientError as err:
                    errors.append(err)
            raise self._spec_from_checks(errors)

    def _check(self, endpoint: Endpoint, retries: int) -> InputSpec:
        client, url, timeout = endpoint.client, endpoint.url, self.timeout_s
        if not self._call(lambda: client.is_server_live(client_timeout=timeout), "server", retries=retries, url=url):
            raise ServerUnavailable(f"the Triton server at {url} answers but is not live (shutting down?)")
        if not self._call(lambda: client.is_model_ready(self.model, client_timeout=timeout), "server", url=url):
            index = self._call(
                lambda: client.get_model_repository_index(as_json=True, client_timeout=timeout), "server", url=url
            )
            raise not_ready_reason(index.get("models", []), self.model, url)
        config = self._call(
            lambda: client.get_model_config(self.model, as_json=True, client_timeout=timeout), "server", url=url
        )
        return input_spec_from_config(config, self.model, url)

    def _ready_now(self, endpoint: Endpoint) -> tuple[bool, str]:
        """Whether a server that failed is ready again (Triton's readiness, kept truthful by acfd serve)."""
        from tritonclient.utils import InferenceServerException

        timeout = min(5.0, self.timeout_s)
        try:
            if endpoint.client.is_server_ready(client_timeout=timeout) and endpoint.client.is_model_ready(
                self.model, client_timeout=timeout
            ):
                return True, ""
            return False, "not ready"
        except InferenceServerException as err:
            return False, one_line(err.message() if callable(getattr(err, "message", None)) else str(err))

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
        detections, latency, _, _ = self._detect(image, timeout_s, min_score, source)
        return detections, latency

    def _detect(self, image, timeout_s, min_score, source) -> tuple[list[Detection], float, str, int]:
        source = source or image_source(image)
        data = encode_image(image, source)
        spec = self.check_ready()
        timeout = self.timeout_s if timeout_s is None else float(timeout_s)
        inputs, outputs = build_request(data, spec)
        started = time.perf_counter()
        result, url, attempts = self._infer_retrying(inputs, outputs, timeout, source)
        latency = time.perf_counter() - started
        return parse_result(result, source, self.score_floor(spec, min_score)), latency, url, attempts

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

    def detect_outcome(self, image: ImageLike, index: int = 0) -> DetectOutcome:
        """One image's ``DetectOutcome`` (the error in it instead of raised; the server that answered)."""
        return self._outcome(index, image)

    def _outcome(self, index: int, image: ImageLike) -> DetectOutcome:
        source = image_source(image, index)
        try:
            detections, latency, url, attempts = self._detect(image, None, None, source)
        except ClientError as err:
            return DetectOutcome(index, source, None, err, 0.0)
        return DetectOutcome(index, source, detections, None, latency, url, attempts)

    # ---- plumbing ------------------------------------------------------------------------------
    def _infer_retrying(self, inputs: list, outputs: list, timeout: float, source: str):
        """(result, url, attempts): attempts on the least busy ready server until one succeeds."""
        from tritonclient.utils import InferenceServerException

        attempts = Attempts(self.pool, self.retries, self.deadline_s, self._no_server)
        while True:
            endpoint = attempts.pick()
            if isinstance(endpoint, float):
                time.sleep(endpoint)
                continue
            if endpoint.checking and not attempts.checked(endpoint, *self._ready_now(endpoint)):
                continue  # it failed before and is not ready yet
            try:
                result = self._infer_once(endpoint, inputs, outputs, timeout, source)
            except (InferenceServerException, DetectTimeout) as raw:
                err = raw if isinstance(raw, DetectTimeout) else self._translate(raw, endpoint.url, source, timeout)
                attempts.failed(endpoint, raw, err)
                continue
            return result, endpoint.url, attempts.succeeded(endpoint)

    def _translate(self, err: Exception, url: str, source: str, timeout_s: float) -> ClientError:
        return translate_error(err, url=url, model=self.model, source=source, timeout_s=timeout_s)

    def _infer_once(self, endpoint: Endpoint, inputs: list, outputs: list, timeout: float, source: str):
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
            call = endpoint.client.async_infer(
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
            raise DetectTimeout(f"{source}: no answer from {endpoint.url} within {timeout:g} s (timeout)")
        result, error = answer[0]
        if error is not None:
            raise error
        return result

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no inference call is in flight (abandoned ones included); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight <= 0, timeout=timeout_s)

    def _call(self, fn, source: str, timeout_s: float | None = None, retries: int | None = None, url: str = ""):
        """A health or config call: UNAVAILABLE retried ``retries`` times (default ``self.retries``)."""
        from tritonclient.utils import InferenceServerException

        retries = self.retries if retries is None else retries
        attempt = 0
        while True:
            try:
                return fn()
            except InferenceServerException as err:
                if control_retryable(err) and attempt < retries:
                    time.sleep(backoff_delay(attempt, self.backoff_s))
                    attempt += 1
                    continue
                raise translate_error(
                    err, url=url or self.url, model=self.model, source=source, timeout_s=timeout_s or self.timeout_s
                ) from None

    def close(self) -> None:
        """Close the channels, after waiting up to ``drain_s`` for calls still in flight (closing
        cancels them, which is what the abandon-on-timeout policy avoids)."""
        self.wait_idle(self.drain_s)
        for endpoint in self.pool.endpoints:
            endpoint.client.close()

    def __enter__(self) -> "DetectorClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
