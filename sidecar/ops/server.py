"""The operations listener: /healthz (alive: the loop and the ZooKeeper client still run),
/readyz (connected and reconciled), /metrics."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sidecar.ops.metrics import Metrics


class OpsServer:
    """Serves the three endpoints on one address, on a daemon thread."""

    def __init__(
        self,
        host: str,
        port: int,
        metrics: Metrics,
        not_ready: Callable[[], list[str]],
        not_healthy: Callable[[], list[str]] = list,
    ) -> None:
        """``not_ready`` lists why the sidecar is not ready (empty: ready); ``not_healthy``
        why it cannot recover by itself (empty: alive), for the liveness probe."""
        # The same answer as /readyz, so that an alert and a probe never disagree.
        metrics.ready.set_function(lambda: 0.0 if not_ready() else 1.0)
        handler = _handler(metrics, not_ready, not_healthy)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="ops", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(
    metrics: Metrics, not_ready: Callable[[], list[str]], not_healthy: Callable[[], list[str]]
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/healthz":
                problems = not_healthy()
                if problems:
                    body = json.dumps({"healthy": False, "reasons": problems}).encode() + b"\n"
                    self._send(503, "application/json", body)
                else:
                    self._send(200, "text/plain", b"ok\n")
            elif self.path == "/readyz":
                reasons = not_ready()
                body = json.dumps({"ready": not reasons, "reasons": reasons}).encode() + b"\n"
                self._send(503 if reasons else 200, "application/json", body)
            elif self.path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(metrics.registry))
            else:
                self._send(404, "text/plain", b"not found: /healthz, /readyz, /metrics\n")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # probes every few seconds would flood the log

    return Handler
