"""Which server gets the next request: least outstanding requests among the healthy ones.

Contract:

* ``parse_urls("a:8001,b:8001")`` (or a list of such strings) gives the distinct addresses in order;
  an empty list is a ``ValueError``.
* ``ServerPool(urls, backoff_s)`` keeps, per server, the requests it has outstanding and whether it
  may be used. ``pick()`` returns the usable server with the fewest outstanding requests (ties taken
  in turn), its count raised, or None; ``wait_s()`` then says how long until one may be tried.
* A server whose attempt failed in a way another server could cure (``failed(endpoint)``) is
  skipped for a cool-down that doubles with each failure in a row (``backoff_s``, at most
  ``MAX_COOLDOWN_S``; failures of requests already in flight while it cools down do not count
  again), then handed out once with ``must_check`` true: the caller asks it whether it
  is ready (Triton's readiness, which ``acfd serve`` keeps truthful) and reports ``checked(endpoint,
  ok)`` before sending anything. A success (``succeeded``) clears its record.
* The pool is thread-safe; the sync and asyncio clients share it (the checks are theirs).
* ``Attempts`` is the retry rule of one image over the pool, the same for both clients and free of
  their I/O: what is retried (``inference_retryable``), how often (``retries``) and for how long
  (``deadline_s``), and the error given up with.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from acfd.clients.errors import ClientError, backoff_delay, inference_retryable
from acfd.clients.request import DEFAULT_URL

MAX_COOLDOWN_S = 10.0


def parse_urls(urls: str | Iterable[str]) -> list[str]:
    """Distinct ``host:port`` addresses, in order, from a comma-separated string or a list of them."""
    items = [urls] if isinstance(urls, str) else list(urls)
    found: list[str] = []
    for item in items:
        for url in str(item).split(","):
            url = url.strip()
            if url and url not in found:
                found.append(url)
    if not found:
        raise ValueError("no server address given (want host:port, several separated by commas)")
    return found


def add_url_argument(parser) -> None:
    """``--url`` of ``acfd detect`` and ``acfd loadtest``: one or several servers (read with ``urls_from_args``)."""
    import argparse

    parser.add_argument(
        "--url",
        action="append",
        default=argparse.SUPPRESS,
        metavar="HOST:PORT",
        help=f"gRPC address of a Triton server, {DEFAULT_URL} if none; repeat it (or separate by commas) for several",
    )


def urls_from_args(args) -> list[str]:
    """The servers named by ``--url`` (``DEFAULT_URL`` when none); ``ValueError`` when the flag is empty."""
    return parse_urls(getattr(args, "url", None) or [DEFAULT_URL])


@dataclass
class Endpoint:
    url: str
    client: Any = None  # the tritonclient of this server (sync or asyncio), made by the client
    outstanding: int = 0
    failures: int = 0  # failed attempts in a row
    down_until: float = 0.0  # time.monotonic() before which it is not used
    suspect: bool = False  # failed since its last success: ask it whether it is ready before use
    checking: bool = False
    answered: int = 0  # attempts that succeeded, for reports
    failed_attempts: int = 0
    last_error: str = field(default="")


class ServerPool:
    def __init__(self, urls: str | Iterable[str], backoff_s: float = 0.2):
        self.endpoints = [Endpoint(url) for url in parse_urls(urls)]
        self.backoff_s = backoff_s
        self._turn = 0
        self._lock = threading.Lock()

    def pick(self) -> Endpoint | None:
        """The usable server with the fewest outstanding requests (its count raised), or None.

        When the endpoint comes back with ``checking`` set, the caller must ask it whether it is
        ready and report ``checked`` before sending it anything."""
        with self._lock:
            now = time.monotonic()
            usable = [e for e in self.endpoints if e.down_until <= now and not e.checking]
            if not usable:
                return None
            n = len(self.endpoints)
            order = {id(e): (i - self._turn) % n for i, e in enumerate(self.endpoints)}
            best = min(usable, key=lambda e: (e.outstanding, order[id(e)]))  # a suspect one is checked first
            self._turn = (self.endpoints.index(best) + 1) % n
            best.outstanding += 1
            best.checking = best.suspect
            return best

    def wait_s(self) -> float:
        """Seconds until some server may be tried again (when ``pick`` found none)."""
        with self._lock:
            now = time.monotonic()
            waits = [e.down_until - now for e in self.endpoints if not e.checking]
            return max(0.01, min(waits)) if waits else 0.05

    def checked(self, endpoint: Endpoint, ok: bool, why: str = "") -> None:
        with self._lock:
            endpoint.checking = False
            if ok:
                endpoint.suspect = False
            else:
                endpoint.outstanding -= 1
                self._cool_down(endpoint, why)

    def succeeded(self, endpoint: Endpoint) -> None:
        with self._lock:
            endpoint.outstanding -= 1
            endpoint.failures = 0
            endpoint.suspect = False
            endpoint.answered += 1

    def failed(self, endpoint: Endpoint, why: str = "") -> None:
        """An attempt failed in a way another server or a later attempt may cure."""
        with self._lock:
            endpoint.outstanding -= 1
            endpoint.failed_attempts += 1
            self._cool_down(endpoint, why)

    def released(self, endpoint: Endpoint) -> None:
        """An attempt ended without saying anything about the server (the caller's own mistake)."""
        with self._lock:
            endpoint.outstanding -= 1

    def _cool_down(self, endpoint: Endpoint, why: str) -> None:
        endpoint.suspect = True
        endpoint.last_error = why
        now = time.monotonic()
        if endpoint.down_until > now:
            # Already cooling down: this failure is another request of the same episode, sent before
            # the first failure was seen (at concurrency 8, eight of them). Only a failure after the
            # cool-down (or a failed check) lengthens it; else a 2 s repair costs a 10 s pause.
            return
        endpoint.down_until = now + min(backoff_delay(endpoint.failures, self.backoff_s), MAX_COOLDOWN_S)
        endpoint.failures += 1

    def shares(self) -> dict[str, int]:
        """Attempts each server answered."""
        with self._lock:
            return {e.url: e.answered for e in self.endpoints}


class Attempts:
    """The attempts of one request over ``pool``; the caller does the I/O::

        attempts = Attempts(pool, retries, deadline_s, give_up)
        while True:
            endpoint = attempts.pick()            # an Endpoint, or seconds to wait first
            if isinstance(endpoint, float):
                sleep(endpoint); continue
            if endpoint.checking and not attempts.checked(endpoint, *ask_ready(endpoint)):
                continue
            try: result = send(endpoint)
            except <the call's errors> as raw:
                attempts.failed(endpoint, raw, <raw as a ClientError>); continue
            return result, attempts.succeeded(endpoint)

    ``failed`` raises the error to give up with: at once for a caller's mistake, and once
    ``retries`` are spent or ``deadline_s`` has passed for what a retry may cure; ``give_up(last
    error or None, attempts, started)`` words the latter. ``pick`` raises it too when no server can
    be tried before the deadline.
    """

    def __init__(
        self,
        pool: ServerPool,
        retries: int,
        deadline_s: float,
        give_up: Callable[[ClientError | None, int, float], ClientError],
    ):
        self.pool, self.retries, self.deadline_s, self.give_up = pool, retries, deadline_s, give_up
        self.started = time.monotonic()
        self.count = 0  # requests sent
        self.last: ClientError | None = None

    def pick(self) -> Endpoint | float:
        endpoint = self.pool.pick()
        if endpoint is not None:
            return endpoint
        wait = self.pool.wait_s()
        if time.monotonic() + wait - self.started > self.deadline_s:
            raise self.give_up(self.last, self.count, self.started)
        return wait

    def checked(self, endpoint: Endpoint, ok: bool, why: str = "") -> bool:
        """Report the readiness check of a ``checking`` endpoint; whether to send to it."""
        self.pool.checked(endpoint, ok, why)
        return ok

    def failed(self, endpoint: Endpoint, raw: Exception, error: ClientError) -> None:
        """A sent request failed with ``raw`` (``error`` says it to the caller): raise, or return to retry."""
        self.count += 1
        if not inference_retryable(raw):
            self.pool.released(endpoint)
            raise error from None
        self.pool.failed(endpoint, str(error))
        self.last = error
        if self.count > self.retries or time.monotonic() - self.started > self.deadline_s:
            raise self.give_up(self.last, self.count, self.started) from None

    def succeeded(self, endpoint: Endpoint) -> int:
        """A sent request was answered; the number of requests sent."""
        self.count += 1
        self.pool.succeeded(endpoint)
        return self.count
