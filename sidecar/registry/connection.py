"""The ZooKeeper client's connection: waits that cost one poll(2) each, sockets marked past
the proxy's capture and secured with TLS when asked, and the watches a resumed session gets
back in one request (kazoo forgets them when the connection drops; ZooKeeper's own clients
send them again with the last zxid seen, and the servers then fire exactly the ones whose
nodes changed meanwhile).
The sends and the watches use kazoo's private internals: internals.py checks them first."""

from __future__ import annotations

import select
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from kazoo.client import KazooClient
from kazoo.handlers.threading import SequentialThreadingHandler
from kazoo.protocol.connection import ConnectionHandler
from kazoo.protocol.serialization import Auth, int_struct, long_struct, write_string

from sidecar.tls import ClientTls, TlsProblem

SET_WATCHES = 101
# Paths per setWatches request, in bytes (as ZooKeeper's Java client chunks them): far below
# jute.maxbuffer.
_CHUNK_BYTES = 128 * 1024


class PollingHandler(SequentialThreadingHandler):  # type: ignore[misc]
    """Kazoo's threading handler, waiting on its sockets with one poll(2) call, and knowing
    the client's connection thread. Kazoo's own wait builds an epoll selector, registers,
    waits and closes it (five system calls and several objects), and its connection thread
    waits two or three times per request and per reply: that was half the CPU of a pipelined
    read. poll has no limit on descriptor numbers either."""

    def __init__(
        self, mark: Callable[[socket.socket], None] | None = None, tls: ClientTls | None = None
    ) -> None:
        """``mark``: applied to each socket before it connects (the proxy's capture decides on
        the first packet, and lets the sidecar's own connections pass); ``tls``: what each
        connection is made with, read again from the files when they change."""
        super().__init__()
        self._connection_thread: threading.Thread | None = None
        self._mark = mark
        self._tls = tls
        self._refused: str | None = None  # the TLS refusal last logged, said once
        self._failed: str | None = None  # the TLS handshake failure last logged, said once

    @property
    def connection_alive(self) -> bool:
        """Whether the client's connection thread still runs (or was never started, or was
        stopped on purpose): when it dies, nothing ever connects again."""
        thread = self._connection_thread
        return thread is None or thread.is_alive()

    def spawn(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> threading.Thread:
        thread: threading.Thread = super().spawn(func, *args, **kwargs)
        if isinstance(getattr(func, "__self__", None), ConnectionHandler):  # its loop
            self._connection_thread = thread
        return thread

    def stop(self) -> None:
        # The client stops its handler first thing as it stops (or starts): before its
        # connection thread ends.
        self._connection_thread = None
        super().stop()

    def select(
        self, rlist: list[Any], wlist: list[Any], xlist: list[Any], timeout: float | None = None
    ) -> tuple[list[Any], list[Any], list[Any]]:
        return poll_select(rlist, wlist, timeout)

    def create_connection(
        self, address: tuple[str, int], timeout: float | None = None, **options: Any
    ) -> socket.socket:
        if self._mark is None and self._tls is None:
            return super().create_connection(address=address, timeout=timeout, **options)  # type: ignore[no-any-return]
        family, kind, proto, _, target = socket.getaddrinfo(*address, type=socket.SOCK_STREAM)[0]
        connection = socket.socket(family, kind, proto)
        try:
            if self._mark:
                self._mark(connection)
            connection.settimeout(timeout)
            connection.connect(target)
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls:
                return self._secured(connection, options.get("hostname") or address[0])
        except OSError:
            connection.close()
            raise
        return connection

    def _secured(self, connection: socket.socket, hostname: str) -> socket.socket:
        """The connection with TLS as the files say now; a file that cannot be used refuses
        this connection (kazoo tries again later; the session lives on meanwhile)."""
        assert self._tls is not None
        log = structlog.get_logger("sidecar")
        try:
            _, changed = self._tls.context()
        except TlsProblem as exc:
            if exc.reason != self._refused:
                self._refused = exc.reason
                log.error("zookeeper_tls_refused", setting=exc.flag, problem=exc.reason)
            raise OSError(exc.reason) from None
        self._refused = None
        if changed:
            log.info("zookeeper_tls_reloaded", ca=str(self._tls.files.ca))
        try:
            return self._tls.wrap(connection, hostname)
        except ssl.SSLError as exc:
            problem = getattr(exc, "verify_message", None) or exc.reason or str(exc)
            if problem != self._failed:  # kazoo tries again and again: said once
                self._failed = problem
                log.error("zookeeper_tls_handshake_failed", server=hostname, problem=problem)
            raise


def poll_select(
    rlist: list[Any], wlist: list[Any], timeout: float | None = None
) -> tuple[list[Any], list[Any], list[Any]]:
    """Which of ``rlist`` can be read and of ``wlist`` written (files or descriptors), waiting
    at most ``timeout`` seconds (None: until one can); as kazoo's select, a closed one raises
    ValueError."""
    reads = [(obj, _fd(obj)) for obj in rlist]
    writes = [(obj, _fd(obj)) for obj in wlist]
    wanted: dict[int, int] = {}
    for pairs, mask in ((reads, select.POLLIN), (writes, select.POLLOUT)):
        for _, fd in pairs:
            wanted[fd] = wanted.get(fd, 0) | mask
    # A TLS socket may hold records already read from its descriptor: readable now, though
    # poll would wait (for the next heartbeat's reply, seconds later) before saying so.
    buffered = {id(obj) for obj, _ in reads if isinstance(obj, ssl.SSLSocket) and obj.pending()}
    if buffered:
        timeout = 0.0
    poller = select.poll()
    for fd, mask in wanted.items():
        poller.register(fd, mask)
    ready = dict(poller.poll(None if timeout is None else max(timeout, 0.0) * 1000))
    if any(events & select.POLLNVAL for events in ready.values()):
        raise ValueError("Invalid event mask or fd")
    # A hung-up or failed socket counts as ready: reading or writing it reports the error.
    broken = select.POLLHUP | select.POLLERR
    readable = [
        o for o, fd in reads if ready.get(fd, 0) & (select.POLLIN | broken) or id(o) in buffered
    ]
    writable = [o for o, fd in writes if ready.get(fd, 0) & (select.POLLOUT | broken)]
    return readable, writable, []


def _fd(obj: Any) -> int:
    fd = obj if isinstance(obj, int) else int(obj.fileno())
    if fd < 0:  # a socket closed meanwhile
        raise ValueError("Invalid event mask or fd")
    return fd


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


def send_together(client: KazooClient) -> None:
    """Make the client's connection thread send every request queued when it wakes, in one
    write. Kazoo sends one request per wake-up (each request queued writes one wake-up byte),
    so a pipelined read of 500 paths cost 500 turns of its loop. Each request's wake-up byte
    is taken when the request is sent, as kazoo does; what is not plain (authentication,
    kazoo's test sentinels) goes kazoo's own way."""
    connection = client._connection
    send_one = connection._send_request

    def send_queued(read_timeout: float, connect_timeout: float) -> None:
        queue, wakes = client._queue, connection._read_sock
        if not queue or not _plain(queue[0][0]):
            send_one(read_timeout, connect_timeout)  # also drops a wake-up left by a failure
            return
        # No more requests than wake-up bytes are in (a request is queued before its byte),
        # so taking one byte per request sent never waits.
        try:
            woken = len(wakes.recv(len(queue), socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except BlockingIOError:
            return
        packets = bytearray()
        sent = 0
        while sent < woken and queue and _plain(queue[0][0]):
            request, async_object = queue.popleft()
            sent += 1
            try:
                payload = request.serialize()
            except Exception as exc:  # e.g. a path with no UTF-8 form: it fails, alone
                async_object.set_exception(exc)
                continue
            connection._xid = connection._xid % 2147483647 + 1
            body = int_struct.pack(connection._xid) + int_struct.pack(request.type) + payload
            packets += int_struct.pack(len(body)) + body
            client._pending.append((request, async_object, connection._xid))
        wakes.recv(sent)
        if packets:  # a failed write drops the connection, which fails every pending request
            connection._write(bytes(packets), connect_timeout)

    connection._send_request = send_queued


def _plain(request: Any) -> bool:
    kind = getattr(request, "type", None)
    return bool(kind) and kind != Auth.type


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
