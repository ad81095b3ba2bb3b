"""Kazoo's private internals that the client's fast path (connection.py) relies on, checked
against the kazoo installed: their kinds and signatures, then kazoo's own code and the fast
path exchanging the same requests and replies over socket pairs (no server, no thread). If
anything differs, the client runs kazoo's own connection loop and says so once."""

from __future__ import annotations

import functools
import inspect
import socket
import struct
from collections import defaultdict, deque
from importlib.metadata import version
from typing import Any

import structlog
from kazoo.client import KazooClient
from kazoo.handlers.threading import SequentialThreadingHandler
from kazoo.protocol.connection import ConnectionHandler
from kazoo.protocol.states import KeeperState

from sidecar.registry.connection import held, poll_select, rearm, send_together

# The private methods the fast path calls or replaces, with their parameters.
_SIGNATURES = (
    (KazooClient, "_call", ("self", "request", "async_object")),
    (ConnectionHandler, "_send_request", ("self", "read_timeout", "connect_timeout")),
    (ConnectionHandler, "_write", ("self", "msg", "timeout")),
)
# The replaced send is looked up on the instance by kazoo's loop, with these arguments.
_LOOP_CALL = "self._send_request(read_timeout, connect_timeout)"
_NOWHERE = "127.0.0.1:1"  # the probe's clients never connect
_TIMEOUT = 0.5  # the probe's data is always there: a wait this long means kazoo changed
_HEADER = struct.Struct("!iqi")  # a reply's xid, zxid, error
_NO_NODE, _AUTH_XID, _WATCH_XID = -101, -4, -1
_CHANGED, _CHILD = 3, 4  # watch event types
# What kazoo's own code makes of the probe: the entries waiting for replies (request, result,
# xid: what the fast path appends), each request's outcome (children named after the request's
# xid), the zxid last seen, the watches held (session, data, child) and the events.
_EXPECTED = {
    "waiting": [
        ("GetChildren", "result 0", 1),
        ("Auth", "result 1", _AUTH_XID),
        ("Exists", "result 2", 2),
        ("_SetWatches", "AsyncResult", 3),
    ],
    "outcomes": [("ok", ["c1"]), ("ok", True), ("ok", None), ("error", "ConnectionLoss")],
    "last_zxid": 103,
    "held": (7, ["/d"], ["/a", "/e"]),
    "events": [("CHILD", "/a"), ("CHANGED", "/d"), ("CHILD", "/e")],
}


def kazoo_differences() -> list[str]:
    """What differs, in the kazoo installed, from the internals the fast path was written
    against: empty when the fast path is safe."""
    found = _shapes()
    if found:  # the exchange would only fail on the same differences
        return found
    seen: list[dict[str, Any]] = []
    for fast, who in ((False, "kazoo's own send"), (True, "the fast path")):
        try:
            seen.append(_exchange(fast))
        except Exception as exc:  # kazoo's private code failing on the probe is a difference
            return [f"exchange with {who}: {type(exc).__name__}: {exc}"]
    own, fast_path = seen
    for key in sorted(own):
        if key in _EXPECTED and own[key] != _EXPECTED[key]:
            found.append(f"exchange: kazoo's own {key} {own[key]!r}, not {_EXPECTED[key]!r}")
        if fast_path[key] != own[key]:
            found.append(f"exchange: the fast path's {key} {fast_path[key]!r}, not {own[key]!r}")
    return found


@functools.cache
def fast_path_allowed() -> bool:
    """Whether the client may use the fast path; if not, logs ``kazoo_internals_changed``
    (once per process: the answer is kept)."""
    differences = kazoo_differences()
    if differences:
        structlog.get_logger("sidecar").warning(
            "kazoo_internals_changed", kazoo_version=version("kazoo"), differences=differences
        )
    return not differences


def _shapes() -> list[str]:
    found = []
    for owner, name, expected in _SIGNATURES:
        try:
            parameters = tuple(inspect.signature(getattr(owner, name)).parameters)
        except AttributeError:
            found.append(f"{owner.__name__}.{name}: missing")
            continue
        except (TypeError, ValueError):  # not a function any more
            parameters = ()
        if parameters != expected:
            found.append(f"{owner.__name__}.{name}: parameters {parameters}, not {expected}")
    try:
        loop = inspect.getsource(ConnectionHandler._connect_attempt)
    except (AttributeError, OSError, TypeError):
        loop = ""
    if _LOOP_CALL not in loop:
        found.append(f"ConnectionHandler._connect_attempt: no call {_LOOP_CALL}")
    client = KazooClient(hosts=_NOWHERE, client_id=(7, b"p" * 16))
    connection = getattr(client, "_connection", None)
    kinds = {
        "KazooClient._connection": isinstance(connection, ConnectionHandler),
        "KazooClient._queue": type(getattr(client, "_queue", None)) is deque,
        "KazooClient._pending": type(getattr(client, "_pending", None)) is deque,
        "KazooClient._data_watchers": _watch_map(getattr(client, "_data_watchers", None)),
        "KazooClient._child_watchers": _watch_map(getattr(client, "_child_watchers", None)),
        "KazooClient._session_id": getattr(client, "_session_id", None) == 7,
        "ConnectionHandler._read_sock": hasattr(connection, "_read_sock"),
        "ConnectionHandler._xid": hasattr(connection, "_xid"),
    }
    return found + [f"{name}: missing or of another kind" for name, ok in kinds.items() if not ok]


def _watch_map(watchers: Any) -> bool:
    return isinstance(watchers, defaultdict) and watchers.default_factory is set


class _Direct(SequentialThreadingHandler):  # type: ignore[misc]
    """Calls watch callbacks at once: the probe starts no thread."""

    def dispatch_callback(self, callback: Any) -> None:
        callback.func(*callback.args)


def _exchange(fast: bool) -> dict[str, Any]:
    """What a client sees sending the probe's requests with kazoo's own send or the fast
    path's, and reading their replies with kazoo's code: the bytes sent, the entries that wait
    for replies (results named by their order), each request's outcome, the watches held, the
    watch events, and what a dropped connection does to a request waiting."""
    client = KazooClient(hosts=_NOWHERE, client_id=(7, b"p" * 16), handler=_Direct())
    connection = client._connection
    wake, waker = socket.socketpair()
    ours, server = socket.socketpair()
    try:
        for end in (wake, waker, ours, server):
            end.settimeout(_TIMEOUT)  # a kazoo that waits for more than is sent fails here
        connection._read_sock, connection._write_sock = wake, waker
        connection._socket, connection._xid = ours, 0
        client._state = KeeperState.CONNECTING  # requests queue, as while connecting
        client._stopped.clear()  # watches are kept and fired, as once started
        if fast:
            send_together(client)
        events: list[tuple[str, str]] = []

        def watcher(event: Any) -> None:
            events.append((event.type, event.path))

        results = [
            client.get_children_async("/a", watch=watcher),
            client.add_auth_async("digest", "user:password"),
            client.exists_async("/b"),
        ]
        rearm(client, ["/d"], ["/e"], watcher, lambda: events.append(("REARM", "failed")))
        sent = _send_queued(connection, wake, server)
        waiting = [tuple(_name(part, results) for part in entry) for entry in client._pending]
        _answer(connection, server, sent)
        seen = {"held": _held(client), "last_zxid": client.last_zxid}
        _notify(connection, server)
        results.append(client.get_children_async("/f"))
        _send_queued(connection, wake, server)
        client._notify_pending(KeeperState.CONNECTING)  # what kazoo does when it drops
        return seen | {
            "sent": sent,
            "waiting": waiting,
            "outcomes": [_outcome(result) for result in results],
            "events": events,
        }
    finally:
        for end in (wake, waker, ours, server):
            end.close()


def _send_queued(connection: Any, wake: socket.socket, server: socket.socket) -> bytes:
    """Run the send as kazoo's loop does, while a wake-up byte is in; what the server got."""
    for _ in range(10):
        if not poll_select([wake], [], 0)[0]:
            break
        connection._send_request(_TIMEOUT, _TIMEOUT)
    else:
        raise RuntimeError("the wake-up bytes are not taken")
    received = b""
    while poll_select([server], [], 0)[0]:
        received += server.recv(1 << 16)
    return received


def _answer(connection: Any, server: socket.socket, sent: bytes) -> None:
    """Reply to each request in ``sent``, as a server would, and let kazoo read the replies."""
    replies: list[bytes] = []
    offset = 0
    while offset < len(sent):
        length, xid, kind = struct.unpack_from("!iii", sent, offset)
        offset += 4 + length
        zxid = 100 + len(replies)
        if kind == 8:  # getChildren: one child, named after the request
            name = f"c{xid}".encode()
            replies.append(_HEADER.pack(xid, zxid, 0) + struct.pack("!ii", 1, len(name)) + name)
        else:  # exists: no node; auth, setWatches: done, no body
            replies.append(_HEADER.pack(xid, zxid, _NO_NODE if kind == 3 else 0))
    _feed(connection, server, replies)


def _notify(connection: Any, server: socket.socket) -> None:
    """The watch events a server sends when /a's children, /d's data and /e's children move."""
    _feed(
        connection,
        server,
        [
            _HEADER.pack(_WATCH_XID, -1, 0) + struct.pack("!iii", kind, 3, len(path)) + path
            for kind, path in ((_CHILD, b"/a"), (_CHANGED, b"/d"), (_CHILD, b"/e"))
        ],
    )


def _feed(connection: Any, server: socket.socket, frames: list[bytes]) -> None:
    server.sendall(b"".join(struct.pack("!i", len(frame)) + frame for frame in frames))
    for _ in frames:
        connection._read_socket(_TIMEOUT)


def _held(client: Any) -> tuple[int, list[str], list[str]]:
    session, data, child = held(client)
    return session, sorted(data), sorted(child)


def _name(part: Any, results: list[Any]) -> Any:
    if isinstance(part, int):
        return part
    index = next((i for i, result in enumerate(results) if result is part), None)
    return f"result {index}" if index is not None else type(part).__name__


def _outcome(result: Any) -> tuple[str, Any]:
    try:
        return "ok", result.get(block=False)
    except Exception as exc:
        return "error", type(exc).__name__
