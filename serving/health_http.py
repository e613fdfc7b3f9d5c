"""The health endpoints of ``acfd serve`` (HTTP, for orchestrators and load balancers).

* ``GET /health/ready``: 200 when the server can answer (the watchdog's verdict: the server runs,
  no repair is under way, the last probe passed), else 503. Send traffic only here while 200.
* ``GET /health/live``: 200 while the server is working or being repaired ("wait"), 503 once the
  watchdog has given up or stalled ("restart me").
* ``GET /health``: both, with the reasons and every repair so far, as JSON (always 200).

The body of the two probes is one JSON object ``{"live"|"ready": bool, "reason": str}``. Triton's
own ``/v2/health/ready`` also answers false while a broken model is out (the watchdog unloads it),
but between a fault and its detection only these endpoints can know.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _handler(health: Callable[[], dict]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state = health()
            path = self.path.split("?", 1)[0].rstrip("/")
            if path == "/health/ready":
                code, body = (
                    (200 if state["ready"] else 503),
                    {"ready": state["ready"], "reason": state["ready_reason"]},
                )
            elif path == "/health/live":
                code, body = (200 if state["live"] else 503), {"live": state["live"], "reason": state["live_reason"]}
            elif path == "/health":
                code, body = 200, state
            else:
                code, body = 404, {"error": f"no such endpoint {path!r} (try /health/ready, /health/live, /health)"}
            data = (json.dumps(body) + "\n").encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format, *args) -> None:  # probes every few seconds: keep the log quiet
            pass

    return Handler


class HealthServer:
    """The endpoints on ``host:port``, answered from ``health()`` in a background thread."""

    def __init__(self, health: Callable[[], dict], host: str = "127.0.0.1", port: int = 8003):
        self._httpd = ThreadingHTTPServer((host, port), _handler(health))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="acfd-health", daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def start(self) -> "HealthServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
