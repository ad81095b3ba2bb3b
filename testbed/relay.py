"""A TCP relay on 127.0.0.1 in front of a real ZooKeeper server that passes its client traffic
through untouched but slows the answer to ``cons`` down: it arrives spread over some seconds
(as from a busy server with many connections), the lines naming one session last."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import time

from testbed.serving import BackgroundServer

_PIECES = 20


class ConsRelay(BackgroundServer):
    """Relays to ``target``, taking ``spread`` seconds to deliver each ``cons`` answer; lines
    containing ``last`` come last."""

    def __init__(self, target: tuple[str, int], spread: float = 0.0) -> None:
        self.spread = spread
        self.last: str | None = None
        self.cons_asked = 0
        relay = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                client: socket.socket = self.request
                with socket.create_connection(target, timeout=10) as server:
                    first = client.recv(65536)
                    server.sendall(first)
                    if first == b"cons":
                        relay.cons_asked += 1
                        relay._cons(client, server)
                    else:
                        _pipe_both_ways(client, server, first)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])

    def _cons(self, client: socket.socket, server: socket.socket) -> None:
        lines: list[bytes] = _read_all(server).splitlines(keepends=True)
        last = (self.last or "\0").encode()
        answer = b"".join([line for line in lines if last not in line] +
                          [line for line in lines if last in line])  # fmt: skip
        step = max(1, len(answer) // _PIECES)
        try:
            for start in range(0, len(answer), step):
                client.sendall(answer[start : start + step])
                time.sleep(self.spread / _PIECES)  # the slowness itself, not synchronisation
        except OSError:
            return  # the reader hung up


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _pipe_both_ways(client: socket.socket, server: socket.socket, sent: bytes) -> None:
    """Relay a ZooKeeper client connection until either side closes it."""
    client.settimeout(None)
    server.settimeout(None)
    done = threading.Event()

    def pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        done.set()

    threading.Thread(target=pump, args=(server, client), daemon=True).start()
    threading.Thread(target=pump, args=(client, server), daemon=True).start()
    done.wait()
    for sock in (client, server):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
