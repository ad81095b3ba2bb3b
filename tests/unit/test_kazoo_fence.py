"""The fence around kazoo's private internals: the kazoo installed has what the client's fast
path relies on, and a kazoo that differs makes the client use kazoo's own loop (no server)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib.metadata import version
from typing import Any

import pytest
from kazoo.client import KazooClient, KazooState
from kazoo.protocol.connection import ConnectionHandler
from structlog.testing import capture_logs

from sidecar.model import Connection
from sidecar.registry.client import Session
from sidecar.registry.connection import PollingHandler
from sidecar.registry.internals import fast_path_allowed, kazoo_differences

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def _checked_again() -> Iterator[None]:
    """Each test sees the check run on the kazoo it patched, and leaves none of it behind."""
    fast_path_allowed.cache_clear()
    yield
    fast_path_allowed.cache_clear()


def _session(states: list[Connection] | None = None) -> Session:
    on_connection = states.append if states is not None else lambda _: None
    return Session("127.0.0.1:1", 10, lambda _: None, on_connection)


def _fast(session: Session) -> bool:
    """Whether the session's connection sends with the fast path (its send replaced)."""
    return "_send_request" in vars(session._client._connection)


def test_the_kazoo_installed_has_every_internal_the_fast_path_relies_on() -> None:
    """Upgrading kazoo fails here first if a private attribute, signature or the shape of the
    requests waiting for replies changed: the sidecar would otherwise fall back at start."""
    assert kazoo_differences() == []
    with capture_logs() as logs:
        session = _session()
    assert session.fast_path
    assert _fast(session)
    assert logs == []


def _call_takes_more(monkeypatch: pytest.MonkeyPatch) -> str:
    call = KazooClient._call

    def _call(self: Any, request: Any, async_object: Any, timeout: Any = None) -> Any:
        return call(self, request, async_object)

    monkeypatch.setattr(KazooClient, "_call", _call)
    return "KazooClient._call"


def _send_renamed(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delattr(ConnectionHandler, "_send_request")
    return "ConnectionHandler._send_request"


def _pending_xid_first(monkeypatch: pytest.MonkeyPatch) -> str:
    """A kazoo whose requests wait for replies as (xid, request, result): its own code works,
    and signatures are unchanged; only the entries' order moved."""
    send, read, notify = (
        ConnectionHandler._send_request,
        ConnectionHandler._read_socket,
        KazooClient._notify_pending,
    )

    def _send_request(self: Any, read_timeout: Any, connect_timeout: Any) -> None:
        waiting = len(self.client._pending)
        send(self, read_timeout, connect_timeout)
        if len(self.client._pending) > waiting:
            request, result, xid = self.client._pending.pop()
            self.client._pending.append((xid, request, result))

    def _read_socket(self: Any, read_timeout: Any) -> Any:
        if self.client._pending:
            xid, request, result = self.client._pending.popleft()
            self.client._pending.appendleft((request, result, xid))
        return read(self, read_timeout)

    def _notify_pending(self: Any, state: Any) -> None:
        self._pending = type(self._pending)((r, a, x) for x, r, a in self._pending)
        notify(self, state)

    monkeypatch.setattr(ConnectionHandler, "_send_request", _send_request)
    monkeypatch.setattr(ConnectionHandler, "_read_socket", _read_socket)
    monkeypatch.setattr(KazooClient, "_notify_pending", _notify_pending)
    return "exchange"


@pytest.mark.parametrize("change", [_call_takes_more, _send_renamed, _pending_xid_first])
def test_a_kazoo_whose_internals_differ_runs_its_own_loop_and_says_so_once(
    monkeypatch: pytest.MonkeyPatch, change: Callable[[pytest.MonkeyPatch], str]
) -> None:
    """With a private method's parameters, a private name or the shape of the requests
    waiting for replies changed, the check names it; every session then uses kazoo's own
    connection loop, and one warning ``kazoo_internals_changed`` gives the version and the
    differences."""
    changed = change(monkeypatch)
    differences = kazoo_differences()
    assert any(difference.startswith(changed) for difference in differences), differences
    with capture_logs() as logs:
        sessions = [_session(), _session()]
    assert [(s.fast_path, _fast(s)) for s in sessions] == [(False, False)] * 2
    assert logs == [
        {
            "event": "kazoo_internals_changed",
            "log_level": "warning",
            "kazoo_version": version("kazoo"),
            "differences": differences,
        }
    ]


@pytest.mark.parametrize("changed", [False, True])
def test_a_reconnect_with_kazoo_changed_reads_everything_again(
    monkeypatch: pytest.MonkeyPatch, changed: bool
) -> None:
    """The same session back after a drop: with kazoo's internals as tested it is RESUMED
    (its watches set again); with them changed, CONNECTED, so that everything is read again
    (and watched anew), as after a new session."""
    if changed:
        _call_takes_more(monkeypatch)
    states: list[Connection] = []
    session = _session(states)
    session._state_changed(KazooState.SUSPENDED)
    session._state_changed(KazooState.CONNECTED)
    back = Connection.CONNECTED if changed else Connection.RESUMED
    assert states == [Connection.SUSPENDED, back]


def test_the_connection_thread_is_known_without_kazoo_internals() -> None:
    """/healthz's "connection thread has died": the thread the client runs its connection
    loop on, once ended, is reported dead until the client is stopped on purpose; other
    threads kazoo starts do not count."""
    handler = PollingHandler()
    connection = KazooClient(hosts="127.0.0.1:1", handler=handler)._connection
    assert handler.connection_alive  # never started
    handler.spawn(lambda: None).join()
    assert handler.connection_alive
    handler.spawn(connection.stop).join()  # a method of the connection: ends at once here
    assert not handler.connection_alive
    handler.stop()
    assert handler.connection_alive


def test_the_thread_kazoo_starts_its_connection_loop_on_is_the_one_watched() -> None:
    """The handler learns the connection thread from kazoo's own start (no private name):
    while kazoo tries to connect, that thread is the one /healthz watches."""
    handler = PollingHandler()
    client = KazooClient(hosts="127.0.0.1:1", handler=handler)
    client.start_async()
    try:
        thread = handler._connection_thread
        assert thread is not None
        assert thread.is_alive()
    finally:
        client.stop()
        client.close()
    assert handler.connection_alive
