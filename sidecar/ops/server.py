"""The operations listener: /healthz (alive: the loop and the ZooKeeper client still run),
/readyz (connected and reconciled), /metrics.

Bounded whatever its clients do: one thread reads every request (a request that is not
whole within a few seconds, or too large, is dropped), and a few workers answer complete
ones; at most _MAX_CONNECTIONS are open at once (the oldest unfinished request makes room
for a new connection). Half-sent requests cost a buffer each, not a thread, and never keep a
probe from being answered.
"""

from __future__ import annotations

import json
import selectors
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sidecar.config import ConfigError
from sidecar.ops.metrics import Metrics

_MAX_CONNECTIONS = 256
_HEAD_LIMIT = 8192  # a request line and headers; probes and scrapes send a few hundred bytes
_READ_FOR = 5.0  # a request must arrive whole within this, from its connection
_SEND_FOR = 5.0
_WORKERS = 4


class OpsServer:
    """Serves the three endpoints on one address, on a daemon thread and a few workers."""

    def __init__(
        self,
        host: str,
        port: int,
        metrics: Metrics,
        not_ready: Callable[[], list[str]],
        not_healthy: Callable[[], list[str]] = list,
    ) -> None:
        """``not_ready`` lists why the sidecar is not ready (empty: ready); ``not_healthy``
        why it cannot recover by itself (empty: alive), for the liveness probe. Raises
        ConfigError saying why when the address cannot be listened on."""
        # The same answer as /readyz, so that an alert and a probe never disagree.
        metrics.ready.set_function(lambda: 0.0 if not_ready() else 1.0)
        self._listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        try:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind((host, port))
            self._listener.listen(128)
        except OSError as exc:
            self._listener.close()
            shown = f"[{host}]" if ":" in host else host
            raise ConfigError(f"cannot listen on {shown}:{port}: {exc.strerror or exc}") from None
        self._listener.setblocking(False)
        self.host = host
        self.port = int(self._listener.getsockname()[1])
        self._metrics = metrics
        self._not_ready = not_ready
        self._not_healthy = not_healthy
        self._workers = ThreadPoolExecutor(_WORKERS, thread_name_prefix="ops-worker")
        self._answering = 0  # requests handed to the workers and not yet answered
        self._lock = threading.Lock()
        self._stop_reading, self._stop_writing = socket.socketpair()
        self._thread = threading.Thread(target=self._serve, name="ops", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop_writing.send(b"x")
        self._thread.join(timeout=2.0)
        self._workers.shutdown(wait=False, cancel_futures=True)
        for sock in (self._listener, self._stop_reading, self._stop_writing):
            sock.close()

    def _serve(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._listener, selectors.EVENT_READ)
        selector.register(self._stop_reading, selectors.EVENT_READ)
        reading: dict[socket.socket, tuple[float, bytearray]] = {}
        while True:
            wait = min((at for at, _ in reading.values()), default=time.monotonic() + 1.0)
            for key, _ in selector.select(max(0.0, wait - time.monotonic())):
                if key.fileobj is self._stop_reading:
                    for conn in reading:
                        conn.close()
                    selector.close()
                    return
                if key.fileobj is self._listener:
                    self._accept(selector, reading)
                elif isinstance(key.fileobj, socket.socket) and key.fileobj in reading:
                    # Not there: made room for a newer one earlier in this same batch.
                    self._read(selector, reading, key.fileobj)
            now = time.monotonic()
            for conn in [c for c, (at, _) in reading.items() if at <= now]:
                selector.unregister(conn)
                del reading[conn]
                conn.close()

    def _accept(
        self,
        selector: selectors.BaseSelector,
        reading: dict[socket.socket, tuple[float, bytearray]],
    ) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:  # BlockingIOError: none left; anything else: try at the next one
                return
            with self._lock:
                full = len(reading) + self._answering >= _MAX_CONNECTIONS
            if full and not reading:
                conn.close()
                continue
            if full:
                # The oldest request still not whole makes room: a probe sends its request
                # at once, so a flood of half-sent ones can delay it, never lock it out.
                oldest = next(iter(reading))
                selector.unregister(oldest)
                del reading[oldest]
                oldest.close()
            conn.setblocking(False)
            reading[conn] = (time.monotonic() + _READ_FOR, bytearray())
            selector.register(conn, selectors.EVENT_READ)

    def _read(
        self,
        selector: selectors.BaseSelector,
        reading: dict[socket.socket, tuple[float, bytearray]],
        conn: socket.socket,
    ) -> None:
        try:
            chunk = conn.recv(_HEAD_LIMIT)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        head = reading[conn][1]
        head += chunk
        whole = b"\r\n\r\n" in head or b"\n\n" in head
        if chunk and not whole and len(head) <= _HEAD_LIMIT:
            return
        selector.unregister(conn)
        del reading[conn]
        if not whole:
            conn.close()  # closed early, or too large to be a probe
            return
        with self._lock:
            self._answering += 1
        self._workers.submit(self._answer, conn, bytes(head))

    def _answer(self, conn: socket.socket, head: bytes) -> None:
        try:
            conn.setblocking(True)
            conn.settimeout(_SEND_FOR)
            method, _, rest = head.split(b"\n", 1)[0].decode("latin-1").partition(" ")
            status, content_type, body = self._route(method, rest.split(" ", 1)[0])
            reason = HTTPStatus(status).phrase
            conn.sendall(
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + (body if method != "HEAD" else b"")
            )
        except OSError:
            pass  # the client went away, or reads too slowly to be a probe
        finally:
            conn.close()
            with self._lock:
                self._answering -= 1

    def _route(self, method: str, path: str) -> tuple[int, str, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"only GET\n"
        if path == "/healthz":
            problems = self._not_healthy()
            if problems:
                body = json.dumps({"healthy": False, "reasons": problems}).encode() + b"\n"
                return 503, "application/json", body
            return 200, "text/plain", b"ok\n"
        if path == "/readyz":
            reasons = self._not_ready()
            body = json.dumps({"ready": not reasons, "reasons": reasons}).encode() + b"\n"
            return (503 if reasons else 200), "application/json", body
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self._metrics.registry)
        return 404, "text/plain", b"not found: /healthz, /readyz, /metrics\n"
