"""Proxy mode fails safe, with real clients on a real ZooKeeper: a container address never
reaches the registry (a write whose mapping is unknown is refused in a way clients retry),
a held request never expires the session, replies keep their order, replies of any size
pass, and many unfinished requests cost a bounded amount of memory."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import OperationTimeoutError

from sidecar import urls
from sidecar.model import Endpoint
from sidecar.proxy import InventoryMapper
from sidecar.sources.static import StaticMapping
from testbed.polling import wait_until
from testbed.proxy_process import ProxyProcess
from testbed.zookeeper import ZooKeeperServer

from .proxy_helpers import (
    ADDRESS,
    ADVERTISED,
    Events,
    Sentinel,
    client_of,
    node_name,
    proxy_for,
    published,
    static_container,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def sentinel(registry: KazooClient, providers: str) -> Iterator[Sentinel]:
    watching = Sentinel(registry, providers)
    yield watching
    assert watching.stop() == [], "a container address reached the registry"


def test_a_write_whose_mapping_never_comes_is_refused_and_retried_once_it_does(
    zookeeper: ZooKeeperServer, registry: KazooClient, providers: str, sentinel: Sentinel
) -> None:
    """No bindings for the app: its registration waits a third of the session timeout, then
    fails as an operation that timed out (what clients retry); nothing reaches the registry.
    Once the bindings are known, the retried registration is published."""
    events, mapper = Events(), InventoryMapper()
    proxy = proxy_for([("127.0.0.1", zookeeper.port)], events, mapper)
    app = client_of(proxy, timeout=3.0)
    try:
        mine = f"{providers}/{node_name()}"
        with pytest.raises(OperationTimeoutError):
            app.create(mine, b"", ephemeral=True)
        [refused] = events.named("proxy_request_refused")
        assert refused["reason"] == "the app's port bindings were not known in time"
        assert registry.get_children(providers) == []
        mapper.update([static_container()], ADVERTISED)
        assert app.create(mine, b"", ephemeral=True) == mine
        assert registry.get_children(providers) == [published(node_name())]
    finally:
        app.stop()
        app.close()
        proxy.stop()


def test_replies_keep_their_order_around_a_refused_request(
    zookeeper: ZooKeeperServer, registry: KazooClient, providers: str, sentinel: Sentinel
) -> None:
    """Pipelined requests around a write the proxy refuses (the app's port is not published):
    every reply reaches the request it answers (kazoo drops a connection whose reply xids
    come out of order), and the session stays connected."""
    events = Events()
    proxy = proxy_for([("127.0.0.1", zookeeper.port)], events)
    app = client_of(proxy)
    try:
        unpublished = f"{providers}/{node_name(port=20999)}"
        before = [app.exists_async(providers) for _ in range(20)]
        refused = app.create_async(unpublished, b"", ephemeral=True)
        after = [app.get_children_async(providers) for _ in range(20)]
        assert all(r.get(timeout=10) is not None for r in before)
        with pytest.raises(OperationTimeoutError):
            refused.get(timeout=10)
        assert all(r.get(timeout=10) == [] for r in after)
        assert app.state == KazooState.CONNECTED
    finally:
        app.stop()
        app.close()
        proxy.stop()


def test_a_held_request_never_expires_the_session(tmp_path: Path) -> None:
    """The client asks for 30 s, the server grants 4 s: a registration held for the mapping
    is held at most a third of what was granted, and the client's pings go on meanwhile; the
    session is never lost."""
    with ZooKeeperServer(tmp_path / "zk", max_session_timeout_ms=4000) as server:
        events, mapper = Events(), InventoryMapper()
        proxy = proxy_for([("127.0.0.1", server.port)], events, mapper)
        app = client_of(proxy, timeout=30.0)
        states: list[str] = []
        app.add_listener(lambda state: states.append(state))
        try:
            session = app.client_id
            with pytest.raises(OperationTimeoutError):
                app.create("/dubbo/x/providers/" + node_name(), b"", makepath=True)
            [held] = events.named("proxy_request_held")
            assert held["waited"] <= 4.0 / 3 + 0.2
            deadline = time.monotonic() + 6  # longer than the granted timeout
            while time.monotonic() < deadline:
                app.exists("/dubbo")  # the session is alive and answering
            assert app.client_id == session
            assert states == []
        finally:
            app.stop()
            app.close()
            proxy.stop()


def test_replies_larger_than_jute_maxbuffer_pass(
    zookeeper: ZooKeeperServer, registry: KazooClient, root: str
) -> None:
    """A listing of 1.3 MB (replies are not bounded by jute.maxbuffer, requests are): the
    app gets it through the proxy."""
    parent = f"{root}/big"
    registry.ensure_path(parent)
    names = [f"n{i:05d}-" + "x" * 250 for i in range(5000)]
    pending = [registry.create_async(f"{parent}/{n}", b"") for n in names]
    for request in pending:
        request.get(timeout=30)
    events = Events()
    proxy = proxy_for([("127.0.0.1", zookeeper.port)], events)
    app = client_of(proxy)
    try:
        assert sorted(app.get_children(parent)) == names
    finally:
        app.stop()
        app.close()
        proxy.stop()


def test_unfinished_requests_cost_a_bounded_amount_of_memory(tmp_path: Path) -> None:
    """Two hundred connections each send most of a 1 MB frame and stop, to a server with no
    per-address connection limit: the proxy's memory grows by at most 100 MB (connections
    that would take its buffers past their bound are closed), and what it took is given back
    once they close."""
    with ZooKeeperServer(tmp_path / "zk", max_client_connections=0) as server:
        proxy = ProxyProcess(tmp_path / "proxy.log", [
            "--listen", "127.0.0.1:0", "--zookeeper", f"127.0.0.1:{server.port}",
            "--static-ports", "20880:32768", "--address", ADDRESS,
        ]).start()  # fmt: skip
        sockets: list[socket.socket] = []
        try:
            port = int(proxy.wait_for_event("proxy_listening")["address"].rsplit(":", 1)[1])
            before = _rss_mb(proxy.pid)
            for _ in range(200):
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                sockets.append(sock)
                sock.sendall(_connect_request() + struct.pack(">i", 0xFFF00) + b"\0" * 0xFF000)
            wait_until(lambda: len(proxy.events("proxy_connection_opened")) == 200, 30)
            peak = _rss_mb(proxy.pid)
            assert peak - before <= 100, f"{before:.0f} -> {peak:.0f} MB"
            closed = proxy.events("proxy_connection_closed")
            assert any("buffers over" in e["reason"] for e in closed)
        finally:
            for sock in sockets:
                sock.close()
        wait_until(lambda: len(proxy.events("proxy_connection_closed")) == 200, 30)
        after = _rss_mb(proxy.pid)
        assert after - before <= 40, f"{before:.0f} -> {peak:.0f} -> {after:.0f} MB"
        assert proxy.terminate() == 0


def _rss_mb(pid: int) -> float:
    """A process's resident memory, MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    [line] = [line for line in status.splitlines() if line.startswith("VmRSS:")]
    return int(line.split()[1]) / 1024


def _connect_request() -> bytes:
    """A ConnectRequest for a new session (30 s), as a client's first frame."""
    body = struct.pack(">iqiq", 0, 0, 30_000, 0) + struct.pack(">i", 16) + b"\0" * 16 + b"\0"
    return struct.pack(">i", len(body)) + body


def test_a_mapping_change_repoints_the_apps_registration(
    zookeeper: ZooKeeperServer, registry: KazooClient, providers: str
) -> None:
    """The app's port is published elsewhere now: within 2 s its registration carries the new
    address, still the app's node (its session's); the app's own exists, setData, getData
    and delete work on it; after the delete nothing is left at either address."""
    events = Events()
    proxy = proxy_for([("127.0.0.1", zookeeper.port)], events)
    app = client_of(proxy)
    try:
        registry.ensure_path(providers)
        mine = f"{providers}/{node_name()}"
        app.create(mine, b"", ephemeral=True)
        assert registry.get_children(providers) == [published(node_name())]
        moved = StaticMapping(((20880, 32999), (50051, 40051)), (ADDRESS,)).container(())
        assert moved is not None
        proxy.mapper.update([moved], ADVERTISED)  # type: ignore[attr-defined]
        now = urls.parse(node_name()).with_endpoint(Endpoint(ADVERTISED, 32999))
        started = time.monotonic()
        wait_until(lambda: registry.get_children(providers) == [now], 5, message="not moved")
        assert time.monotonic() - started <= 2.0
        stat = registry.exists(f"{providers}/{now}")
        assert stat is not None
        assert stat.ephemeralOwner == app.client_id[0]
        assert app.exists(mine) is not None
        app.set(mine, b"weight=100")
        assert registry.get(f"{providers}/{now}")[0] == b"weight=100"
        assert app.get(mine)[0] == b"weight=100"
        app.delete(mine)
        assert registry.get_children(providers) == []
        [moved_event] = events.named("proxy_repointed")
        assert moved_event["to"] == f"{providers}/{now}"
    finally:
        app.stop()
        app.close()
        proxy.stop()
