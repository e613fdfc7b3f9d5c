"""The client's errors, how a ``tritonclient`` failure becomes one, and which failures are retried.

Contract:

* ``ClientError`` is the base of every client error; its message is one readable line.
  ``ServerUnavailable`` (nothing answers), ``ModelNotReady`` (the model is unknown or not loaded),
  ``DetectTimeout`` (no answer within the attempt's deadline), ``InferenceFailed`` as
  ``InvalidRequest`` (gRPC ``INVALID_ARGUMENT``: the caller's bytes) or ``ServerFault`` (the server
  failed on a request it accepted), ``ImageInputError`` (a local file that cannot be read).
* ``translate_error(err, ...)`` maps a ``tritonclient`` exception to one of them.
* Inference is idempotent, so ``inference_retryable(err)`` is true for every failure a repair of the
  server, another attempt or another server can cure: ``UNAVAILABLE`` (no server, a connection
  dropped), ``INTERNAL`` / ``UNKNOWN`` (a model's process died; the watchdog of ``acfd serve``
  reloads it), ``NOT_FOUND`` (the model is out while it is reloaded), ``ABORTED``,
  ``RESOURCE_EXHAUSTED``, ``CANCELLED`` and a deadline passed (a hung model). Never
  ``INVALID_ARGUMENT`` or any other code that says the request itself is wrong: sending it again
  gets the same answer.
* ``control_retryable(err)``: health and config calls are retried on ``UNAVAILABLE`` only (a server
  starting up): an unknown model name must fail at once.
* ``backoff_delay(attempt, backoff_s)``: ``backoff_s * 2**attempt``, at most ``MAX_BACKOFF_S``.
"""

from __future__ import annotations

MAX_BACKOFF_S = 5.0
RETRYABLE_STATUSES = frozenset(
    "StatusCode." + name
    for name in (
        "UNAVAILABLE", "INTERNAL", "UNKNOWN", "NOT_FOUND", "ABORTED", "RESOURCE_EXHAUSTED", "CANCELLED",
        "DEADLINE_EXCEEDED",
    )
)  # fmt: skip


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


def one_line(text: str | None) -> str:
    return " ".join(str(text or "").split())


def status_of(err: Exception) -> str:
    return (err.status() if callable(getattr(err, "status", None)) else "") or ""


def control_retryable(err: Exception) -> bool:
    """Health and config calls: only UNAVAILABLE is retried (the server may be starting up)."""
    return status_of(err) == "StatusCode.UNAVAILABLE"


def inference_retryable(err: Exception) -> bool:
    """An inference failure that another attempt (after a repair, or on another server) may cure."""
    if isinstance(err, DetectTimeout):
        return True
    if isinstance(err, ClientError):
        return isinstance(err, (ServerUnavailable, ModelNotReady, ServerFault))
    return status_of(err) in RETRYABLE_STATUSES


# kept under its old name: what the clients retried before several servers and repairs existed
is_retryable = control_retryable


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
