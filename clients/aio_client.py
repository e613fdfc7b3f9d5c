"""asyncio gRPC client of the served ACFD ensemble (``tritonclient.grpc.aio``).

Same surface and semantics as ``acfd.clients.grpc_client.DetectorClient``, with coroutines:
``await check_ready()``, ``await detect(image)``, ``await detect_timed(image)``,
``await detect_many(images, concurrency)`` (at most ``concurrency`` requests in flight, input order
kept), ``async for outcome in stream(images, concurrency)``, ``await close()`` / ``async with``.
One URL or several (a list, or commas): each request goes to the ready server with the fewest
outstanding requests (``acfd.clients.pool``). Errors are the same classes (``ServerUnavailable``,
``ModelNotReady``, ``DetectTimeout``, ``InferenceFailed`` as ``InvalidRequest`` or ``ServerFault``,
``ImageInputError``), and the same failures are retried (``inference_retryable``: never
``INVALID_ARGUMENT``), up to ``retries`` times within ``deadline_s``, with exponential backoff.
A timed-out inference is abandoned, not cancelled, unless ``cancel_on_timeout`` (see
``acfd.clients.grpc_client`` for why); ``close()`` waits up to ``drain_s`` for such calls.

The gRPC channel is opened on first use, inside the running event loop, so a client may be built
outside a loop and used in one (not shared across loops).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable

from acfd.clients.detections import Detection
from acfd.clients.errors import (
    ClientError,
    DetectTimeout,
    ServerUnavailable,
    backoff_delay,
    control_retryable,
    not_ready_reason,
    one_line,
    translate_error,
)
from acfd.clients.grpc_client import CHECK_RETRIES, ClientOptions
from acfd.clients.pool import Attempts, Endpoint
from acfd.clients.request import (
    DEFAULT_MODEL,
    DEFAULT_URL,
    DetectOutcome,
    ImageLike,
    InputSpec,
    build_request,
    encode_image,
    image_source,
    input_spec_from_config,
    parse_result,
)


class AsyncDetectorClient(ClientOptions):
    """Coroutine client of one or several Triton Inference Servers; use from a single event loop."""

    def __init__(self, url: str | Iterable[str] = DEFAULT_URL, model: str = DEFAULT_MODEL, **options):
        """``options``: as for ``DetectorClient`` (see ``ClientOptions``)."""
        super().__init__(url, model, **options)
        self._spec: InputSpec | None = None
        self._lock: asyncio.Lock | None = None
        self._in_flight: set[asyncio.Task] = set()  # inference calls not answered (abandoned ones too)

    def _grpc(self, endpoint: Endpoint):
        if endpoint.client is None:
            import tritonclient.grpc.aio as aioclient

            endpoint.client = aioclient.InferenceServerClient(endpoint.url)
        return endpoint.client

    async def check_ready(self) -> InputSpec:
        """Raise ``ServerUnavailable`` / ``ModelNotReady`` with one line unless a server is ready;
        the model's input spec."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._spec is not None:
                return self._spec
            errors: list[ClientError] = []
            retries = min(self.retries, CHECK_RETRIES) if len(self.urls) == 1 else 0
            for endpoint in self.pool.endpoints:
                try:
                    self._spec = await self._check(endpoint, retries)
                    return self._spec
                except ClientError as err:
                    errors.append(err)
            raise self._spec_from_checks(errors)

    async def _check(self, endpoint: Endpoint, retries: int) -> InputSpec:
        client, url, timeout = self._grpc(endpoint), endpoint.url, self.timeout_s
        if not await self._call(lambda: client.is_server_live(client_timeout=timeout), "server", url, retries):
            raise ServerUnavailable(f"the Triton server at {url} answers but is not live (shutting down?)")
        if not await self._call(lambda: client.is_model_ready(self.model, client_timeout=timeout), "server", url):
            index = await self._call(
                lambda: client.get_model_repository_index(as_json=True, client_timeout=timeout), "server", url
            )
            raise not_ready_reason(index.get("models", []), self.model, url)
        config = await self._call(
            lambda: client.get_model_config(self.model, as_json=True, client_timeout=timeout), "server", url
        )
        return input_spec_from_config(config, self.model, url)

    async def _ready_now(self, endpoint: Endpoint) -> tuple[bool, str]:
        from tritonclient.utils import InferenceServerException

        client, timeout = self._grpc(endpoint), min(5.0, self.timeout_s)
        try:
            ready = await client.is_server_ready(client_timeout=timeout) and await client.is_model_ready(
                self.model, client_timeout=timeout
            )
            return bool(ready), "" if ready else "not ready"
        except InferenceServerException as err:
            return False, one_line(err.message() if callable(getattr(err, "message", None)) else str(err))

    async def detect(
        self, image: ImageLike, timeout_s: float | None = None, min_score: float | None = None
    ) -> list[Detection]:
        detections, _ = await self.detect_timed(image, timeout_s=timeout_s, min_score=min_score)
        return detections

    async def detect_timed(
        self,
        image: ImageLike,
        timeout_s: float | None = None,
        min_score: float | None = None,
        source: str | None = None,
    ) -> tuple[list[Detection], float]:
        detections, latency, _, _ = await self._detect(image, timeout_s, min_score, source)
        return detections, latency

    async def _detect(self, image, timeout_s, min_score, source) -> tuple[list[Detection], float, str, int]:
        source = source or image_source(image)
        data = encode_image(image, source)
        spec = await self.check_ready()
        timeout = self.timeout_s if timeout_s is None else float(timeout_s)
        inputs, outputs = build_request(data, spec)
        started = time.perf_counter()
        result, url, attempts = await self._infer_retrying(inputs, outputs, timeout, source)
        latency = time.perf_counter() - started
        return parse_result(result, source, self.score_floor(spec, min_score)), latency, url, attempts

    async def stream(self, images: Iterable[ImageLike], concurrency: int = 4) -> AsyncIterator[DetectOutcome]:
        """One ``DetectOutcome`` per image, in input order, at most ``concurrency`` requests in flight."""
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        gate = asyncio.Semaphore(concurrency)
        pending: list[asyncio.Task] = []

        async def one(index: int, image: ImageLike) -> DetectOutcome:
            async with gate:
                return await self._outcome(index, image)

        try:
            for index, image in enumerate(images):
                pending.append(asyncio.ensure_future(one(index, image)))
                if len(pending) >= 2 * concurrency:
                    yield await pending.pop(0)
            while pending:
                yield await pending.pop(0)
        finally:
            for task in pending:
                task.cancel()

    async def detect_many(
        self, images: Iterable[ImageLike], concurrency: int = 4, return_exceptions: bool = False
    ) -> list[list[Detection] | ClientError]:
        results: list[list[Detection] | ClientError] = []
        async for outcome in self.stream(images, concurrency):
            if outcome.error is not None and not return_exceptions:
                raise outcome.error
            results.append(outcome.detections if outcome.error is None else outcome.error)
        return results

    async def detect_outcome(self, image: ImageLike, index: int = 0) -> DetectOutcome:
        """One image's ``DetectOutcome`` (the error in it instead of raised; the server that answered)."""
        return await self._outcome(index, image)

    async def _outcome(self, index: int, image: ImageLike) -> DetectOutcome:
        source = image_source(image, index)
        try:
            detections, latency, url, attempts = await self._detect(image, None, None, source)
        except ClientError as err:
            return DetectOutcome(index, source, None, err, 0.0)
        return DetectOutcome(index, source, detections, None, latency, url, attempts)

    async def _infer_retrying(self, inputs: list, outputs: list, timeout: float, source: str):
        """(result, url, attempts), as ``DetectorClient._infer_retrying``."""
        from tritonclient.utils import InferenceServerException

        attempts = Attempts(self.pool, self.retries, self.deadline_s, self._no_server)
        while True:
            endpoint = attempts.pick()
            if isinstance(endpoint, float):
                await asyncio.sleep(endpoint)
                continue
            if endpoint.checking and not attempts.checked(endpoint, *await self._ready_now(endpoint)):
                continue
            try:
                result = await self._infer_once(endpoint, inputs, outputs, timeout, source)
            except (InferenceServerException, DetectTimeout) as raw:
                err = (
                    raw
                    if isinstance(raw, DetectTimeout)
                    else translate_error(raw, url=endpoint.url, model=self.model, source=source, timeout_s=timeout)
                )
                attempts.failed(endpoint, raw, err)
                continue
            return result, endpoint.url, attempts.succeeded(endpoint)

    async def _infer_once(self, endpoint: Endpoint, inputs: list, outputs: list, timeout: float, source: str):
        call = asyncio.ensure_future(
            self._grpc(endpoint).infer(
                self.model,
                inputs,
                outputs=outputs,
                client_timeout=timeout if self.cancel_on_timeout else None,
                compression_algorithm=self.compression,
            )
        )
        self._in_flight.add(call)
        call.add_done_callback(_forget(self._in_flight))
        # asyncio.wait, unlike wait_for, leaves the call running when the time is up
        done, _ = await asyncio.wait({call}, timeout=timeout + (1.0 if self.cancel_on_timeout else 0.0))
        if not done:
            if self.cancel_on_timeout:
                call.cancel()
            raise DetectTimeout(f"{source}: no answer from {endpoint.url} within {timeout:g} s (timeout)")
        return call.result()

    async def _call(self, make_call, source: str, url: str = "", retries: int | None = None):
        """A health or config call: UNAVAILABLE retried ``retries`` times (default ``self.retries``)."""
        from tritonclient.utils import InferenceServerException

        retries = self.retries if retries is None else retries
        attempt = 0
        while True:
            try:
                return await make_call()
            except InferenceServerException as err:
                if control_retryable(err) and attempt < retries:
                    await asyncio.sleep(backoff_delay(attempt, self.backoff_s))
                    attempt += 1
                    continue
                raise translate_error(
                    err, url=url or self.url, model=self.model, source=source, timeout_s=self.timeout_s
                ) from None

    async def close(self) -> None:
        """Close the channels, after waiting up to ``drain_s`` for calls still in flight."""
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=self.drain_s)
        for endpoint in self.pool.endpoints:
            if endpoint.client is not None:
                await endpoint.client.close()
                endpoint.client = None

    async def __aenter__(self) -> "AsyncDetectorClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


def _forget(calls: set):
    """A done-callback that drops a finished call and reads its outcome (no 'never retrieved' noise)."""

    def done(task: asyncio.Task) -> None:
        calls.discard(task)
        if not task.cancelled():
            task.exception()

    return done
