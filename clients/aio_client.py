"""asyncio gRPC client of the served ACFD ensemble (``tritonclient.grpc.aio``).

Same surface and semantics as ``acfd.clients.grpc_client.DetectorClient``, with coroutines:
``await check_ready()``, ``await detect(image)``, ``await detect_timed(image)``,
``await detect_many(images, concurrency)`` (at most ``concurrency`` requests in flight, input order
kept), ``async for outcome in stream(images, concurrency)``, ``await close()`` / ``async with``.
Errors are the same classes (``ServerUnavailable``, ``ModelNotReady``, ``DetectTimeout``,
``InferenceFailed`` as ``InvalidRequest`` or ``ServerFault``, ``ImageInputError``); only UNAVAILABLE
is retried, with exponential backoff.
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
from acfd.clients.grpc_client import (
    DEFAULT_MODEL,
    DEFAULT_URL,
    ClientError,
    ClientOptions,
    DetectOutcome,
    ImageLike,
    InputSpec,
    ServerUnavailable,
    DetectTimeout,
    backoff_delay,
    build_request,
    encode_image,
    image_source,
    input_spec_from_config,
    is_retryable,
    not_ready_reason,
    parse_result,
    translate_error,
)


class AsyncDetectorClient(ClientOptions):
    """Coroutine client of one Triton Inference Server; use from a single event loop."""

    def __init__(self, url: str = DEFAULT_URL, model: str = DEFAULT_MODEL, **options):
        """``options``: as for ``DetectorClient`` (see ``ClientOptions``)."""
        super().__init__(url, model, **options)
        self._client = None
        self._spec: InputSpec | None = None
        self._lock: asyncio.Lock | None = None
        self._in_flight: set[asyncio.Task] = set()  # inference calls not answered (abandoned ones too)

    def _grpc(self):
        if self._client is None:
            import tritonclient.grpc.aio as aioclient

            self._client = aioclient.InferenceServerClient(self.url)
        return self._client

    async def check_ready(self) -> InputSpec:
        """Raise ``ServerUnavailable`` / ``ModelNotReady`` with one line, else the model's input spec."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._spec is not None:
                return self._spec
            client, timeout = self._grpc(), self.timeout_s
            if not await self._call(lambda: client.is_server_live(client_timeout=timeout), "server"):
                raise ServerUnavailable(f"the Triton server at {self.url} answers but is not live (shutting down?)")
            if not await self._call(lambda: client.is_model_ready(self.model, client_timeout=timeout), "server"):
                index = await self._call(
                    lambda: client.get_model_repository_index(as_json=True, client_timeout=timeout), "server"
                )
                raise not_ready_reason(index.get("models", []), self.model, self.url)
            config = await self._call(
                lambda: client.get_model_config(self.model, as_json=True, client_timeout=timeout), "server"
            )
            self._spec = input_spec_from_config(config, self.model, self.url)
            return self._spec

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
        source = source or image_source(image)
        data = encode_image(image, source)
        spec = await self.check_ready()
        timeout = self.timeout_s if timeout_s is None else float(timeout_s)
        inputs, outputs = build_request(data, spec)
        started = time.perf_counter()
        result = await self._call(lambda: self._infer_once(inputs, outputs, timeout, source), source, timeout)
        latency = time.perf_counter() - started
        return parse_result(result, source, self.score_floor(spec, min_score)), latency

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

    async def _outcome(self, index: int, image: ImageLike) -> DetectOutcome:
        source = image_source(image, index)
        try:
            detections, latency = await self.detect_timed(image, source=source)
        except ClientError as err:
            return DetectOutcome(index, source, None, err, 0.0)
        return DetectOutcome(index, source, detections, None, latency)

    async def _infer_once(self, inputs: list, outputs: list, timeout: float, source: str):
        call = asyncio.ensure_future(
            self._grpc().infer(
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
            raise DetectTimeout(f"{source}: no answer from {self.url} within {timeout:g} s (timeout)")
        return call.result()

    async def _call(self, make_call, source: str, timeout_s: float | None = None):
        from tritonclient.utils import InferenceServerException

        attempt = 0
        while True:
            try:
                return await make_call()
            except InferenceServerException as err:
                if is_retryable(err) and attempt < self.retries:
                    await asyncio.sleep(backoff_delay(attempt, self.backoff_s))
                    attempt += 1
                    continue
                raise translate_error(
                    err, url=self.url, model=self.model, source=source, timeout_s=timeout_s or self.timeout_s
                ) from None

    async def close(self) -> None:
        """Close the channel, after waiting up to ``drain_s`` for calls still in flight."""
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=self.drain_s)
        if self._client is not None:
            await self._client.close()
            self._client = None

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
