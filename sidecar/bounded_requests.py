"""Requests to other hosts with one deadline each and a cap on the answer: a server that
answers slowly, endlessly or hugely costs a bounded time and memory, never a thread for good.

A socket timeout alone bounds each read, not the request: one byte every half second keeps a
read with a 2 s timeout going for ever. Here the whole request has one deadline, and an
answer is complete (the server closed the connection, or the HTTP body ended) or an error.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass


class AnswerTooLarge(ValueError):
    """The answer is larger than the caller's cap."""


def ask(
    host: str,
    port: int,
    request: bytes,
    timeout: float,
    limit: int,
    secure: Callable[[socket.socket], socket.socket] | None = None,
) -> bytes:
    """Send ``request`` and read until the server closes the connection (ZooKeeper's
    four-letter words); raise TimeoutError past ``timeout`` seconds, AnswerTooLarge beyond
    ``limit`` bytes, OSError if the connection fails. ``secure``: makes the connected socket
    a TLS one (the handshake within the same deadline)."""
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as plain:
        conn = secure(plain) if secure else plain
        conn.sendall(request)
        chunks: list[bytes] = []
        size = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no complete answer within {timeout:g} s")
            conn.settimeout(remaining)
            chunk = conn.recv(65536)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > limit:
                raise AnswerTooLarge(f"answer larger than {limit} bytes")
            chunks.append(chunk)


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes


def http_request(
    url: str,
    timeout: float,
    limit: int,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    context: ssl.SSLContext | None = None,
    server_name: str | None = None,
) -> Response:
    """One HTTP request, never through a proxy, finished within ``timeout`` seconds (connect,
    headers and body together) or TimeoutError; a body over ``limit`` bytes is
    AnswerTooLarge; any status is an answer. OSError or ValueError when it fails otherwise.
    ``context``: what an ``https`` URL's server is verified with (None: the system's CAs);
    ``server_name``: the name its certificate must give (None: the URL's host)."""
    parts = urllib.parse.urlsplit(url)
    conn = (
        _HTTPS(parts.hostname or "", parts.port, timeout, context, server_name)
        if parts.scheme == "https"
        else http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    )
    cut = threading.Event()
    # The connection lets go of its socket once a response is read (HTTP/1.0 answers), so
    # the socket is kept here for the watchdog.
    connected: list[socket.socket] = []

    def stop_waiting() -> None:
        # Shutting the socket down ends a read blocked in any phase, TLS handshake included
        # (then the connection holds the plain socket the handshake runs on).
        cut.set()
        sock = connected[0] if connected else conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                return

    watchdog = threading.Timer(timeout, stop_waiting)
    watchdog.daemon = True
    watchdog.start()
    target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    try:
        conn.connect()
        connected.append(conn.sock)
        conn.request(method, target, headers=headers or {})
        response = conn.getresponse()
        body = response.read(limit + 1)
    except (OSError, http.client.HTTPException) as exc:
        if cut.is_set():
            raise TimeoutError(f"no complete answer within {timeout:g} s") from None
        raise OSError(str(exc) or type(exc).__name__) from None
    finally:
        watchdog.cancel()
        conn.close()
    if cut.is_set():
        raise TimeoutError(f"no complete answer within {timeout:g} s")
    if len(body) > limit:
        raise AnswerTooLarge(f"body larger than {limit} bytes")
    return Response(response.status, body)


class _HTTPS(http.client.HTTPConnection):
    """HTTPS to one address whose certificate may name the server otherwise (an address
    resolved from a name: the name is what the certificate gives)."""

    def __init__(
        self,
        host: str,
        port: int | None,
        timeout: float,
        context: ssl.SSLContext | None,
        server_name: str | None,
    ) -> None:
        super().__init__(host, port, timeout=timeout)
        self._tls = context or ssl.create_default_context()
        self._name = server_name or host
        self.default_port = http.client.HTTPS_PORT if port is None else port

    def connect(self) -> None:
        super().connect()
        self.sock = self._tls.wrap_socket(self.sock, server_hostname=self._name)
