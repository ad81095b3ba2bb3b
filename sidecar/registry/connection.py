"""The ZooKeeper client's connection: sockets marked past the proxy's capture, and the
watches a resumed session gets back in one request (kazoo forgets them when the connection
drops; ZooKeeper's own clients send them again with the last zxid seen, and the servers then
fire exactly the ones whose nodes changed meanwhile)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from typing import Any

from kazoo.client import KazooClient
from kazoo.handlers.threading import SequentialThreadingHandler
from kazoo.protocol.serialization import int_struct, long_struct, write_string

SET_WATCHES = 101
# Paths per setWatches request, in bytes (as ZooKeeper's Java client chunks them): far below
# jute.maxbuffer.
_CHUNK_BYTES = 128 * 1024


class MarkingHandler(SequentialThreadingHandler):  # type: ignore[misc]
    """Kazoo's threading handler, marking each socket before it connects (a redirect is
    decided on the first packet). The sidecar does not speak TLS to ZooKeeper."""

    def __init__(self, mark: Callable[[socket.socket], None]) -> None:
        super().__init__()
        self._mark = mark

    def create_connection(
        self, address: tuple[str, int], timeout: float | None = None, **options: Any
    ) -> socket.socket:
        family, kind, proto, _, target = socket.getaddrinfo(*address, type=socket.SOCK_STREAM)[0]
        connection = socket.socket(family, kind, proto)
        try:
            self._mark(connection)
            connection.settimeout(timeout)
            connection.connect(target)
        except OSError:
            connection.close()
            raise
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection


class _SetWatches:
    """ZooKeeper's setWatches request (opcode 101), which kazoo does not have."""

    type = SET_WATCHES

    def __init__(self, zxid: int, data: list[str], exist: list[str], child: list[str]) -> None:
        self._zxid = zxid
        self._lists = (data, exist, child)

    def serialize(self) -> bytearray:
        out = bytearray(long_struct.pack(self._zxid))
        for paths in self._lists:
            out.extend(int_struct.pack(len(paths)))
            for path in paths:
                out.extend(write_string(path))
        return out

    @classmethod
    def deserialize(cls, data: bytes, offset: int) -> None:
        return None


def held(client: KazooClient) -> tuple[int, set[str], set[str]]:
    """The client's session (even while disconnected: ``client_id`` says None then) and the
    (data or existence, child) watches it holds, by server path."""
    return int(client._session_id or 0), set(client._data_watchers), set(client._child_watchers)


def rearm(
    client: KazooClient,
    data: Iterable[str],
    child: Iterable[str],
    watcher: Callable[[Any], None],
    failed: Callable[[], None],
) -> None:
    """Ask the server to set these watches again for the resumed session, as of the last zxid
    seen (a change since fires at once), and route their events to ``watcher``. Must run on
    kazoo's connection thread (its state listener) so that no event can come first.
    ``failed`` is called if the server does not take them."""
    data, child = sorted(data), sorted(child)
    for path in data:
        client._data_watchers[path].add(watcher)
    for path in child:
        client._child_watchers[path].add(watcher)
    for data_part, child_part in _chunks(data, child):
        result = client.handler.async_result()
        result.rawlink(lambda done: failed() if not done.successful() else None)
        client._call(_SetWatches(client.last_zxid, data_part, [], child_part), result)


def _chunks(data: list[str], child: list[str]) -> Iterable[tuple[list[str], list[str]]]:
    part: tuple[list[str], list[str]] = ([], [])
    size = 0
    for kind, paths in ((0, data), (1, child)):
        for path in paths:
            if size + len(path) + 4 > _CHUNK_BYTES and (part[0] or part[1]):
                yield part
                part, size = ([], []), 0
            part[kind].append(path)
            size += len(path) + 4
    if part[0] or part[1]:
        yield part
