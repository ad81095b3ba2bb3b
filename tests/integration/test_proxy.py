"""Proxy mode with real clients on a real ZooKeeper: registrations are published from birth,
the app sees its own names, and what the proxy cannot use closes only its own connection."""

from __future__ import annotations

import queue
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator

import pytest
from kazoo.client import KazooClient
from kazoo.protocol.states import EventType, WatchedEvent

from sidecar.proxy import InventoryMapper, ProxyServer
from testbed.polling import wait_until
from testbed.zookeeper import ZooKeeperServer

from .proxy_helpers import (
    ADDRESS,
    ADVERTISED,
    Events,
    Listings,
    client_of,
    node_name,
    proxy_for,
    published,
    static_container,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

JAVA_CLASSPATH = ":".join(
    f"/usr/share/java/{jar}.jar"
    for jar in ("zookeeper", "zookeeper-jute", "slf4j-api", "slf4j-nop")
)


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def proxy(zookeeper: ZooKeeperServer, events: Events) -> Iterator[ProxyServer]:
    server = proxy_for([("127.0.0.1", zookeeper.port)], events)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def app(proxy: ProxyServer) -> Iterator[KazooClient]:
    """The app's ZooKeeper client, pointed at the proxy."""
    client = client_of(proxy)
    try:
        yield client
    finally:
        client.stop()
        client.close()


def test_registration_is_published_from_birth(
    app: KazooClient, registry: KazooClient, providers: str
) -> None:
    """kazoo creates an ephemeral provider node with its container address: a direct
    consumer's watch only ever sees the published name, owned by the app's own session, with
    the advertised host as data; the app is told its own path and lists it under its name."""
    listings = Listings(registry, providers)
    mine = f"{providers}/{node_name()}"

    assert app.create(mine, ADDRESS.encode(), ephemeral=True) == mine

    listings.wait_for(published(node_name()))
    assert not any(node_name() in listing for listing in listings.all())
    data, stat = registry.get(f"{providers}/{published(node_name())}")
    assert data == ADVERTISED.encode()
    assert stat.ephemeralOwner == app.client_id[0]
    assert app.get_children(providers) == [node_name()]
    assert app.exists(mine) is not None


def test_watches_fire_under_the_apps_names(
    app: KazooClient, registry: KazooClient, providers: str
) -> None:
    """A data watch and an exists watch the app sets on its own node fire, with the app's
    path, when the published node changes and goes."""
    registry.ensure_path(providers)
    mine = f"{providers}/{node_name()}"
    app.create(mine, b"", ephemeral=True)
    fired: queue.Queue[WatchedEvent] = queue.Queue()
    app.get(mine, watch=fired.put)

    registry.set(f"{providers}/{published(node_name())}", b"weight=50")
    changed = fired.get(timeout=10)
    assert (changed.type, changed.path) == (EventType.CHANGED, mine)
    app.exists(mine, watch=fired.put)
    registry.delete(f"{providers}/{published(node_name())}")
    deleted = fired.get(timeout=10)
    assert (deleted.type, deleted.path) == (EventType.DELETED, mine)


def test_multi_publishes_each_operation(
    app: KazooClient, registry: KazooClient, providers: str
) -> None:
    """A transaction registering two protocols and checking the parent: both nodes are
    published, the results name them as the app asked."""
    registry.ensure_path(providers)
    dubbo, tri = node_name(20880), node_name(50051, "tri")
    transaction = app.transaction()
    transaction.create(f"{providers}/{dubbo}", ADDRESS.encode(), ephemeral=True)
    transaction.create(f"{providers}/{tri}", b"", ephemeral=True)
    transaction.check(providers, registry.get(providers)[1].version)

    assert transaction.commit() == [f"{providers}/{dubbo}", f"{providers}/{tri}", True]
    assert sorted(registry.get_children(providers)) == sorted([published(dubbo), published(tri)])


def test_java_client_registers_published(
    proxy: ProxyServer, registry: KazooClient, providers: str, events: Events
) -> None:
    """The ZooKeeper Java client (ZooKeeperMain) creates its ephemeral node published, and
    prints the path it asked for."""
    listings = Listings(registry, providers)
    mine = f"{providers}/{node_name()}"
    done = subprocess.run(
        ["java", "-cp", JAVA_CLASSPATH, "org.apache.zookeeper.ZooKeeperMain",
         "-server", f"127.0.0.1:{proxy.address[1]}", "create", "-e", mine, ADDRESS],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert f"Created {mine}" in done.stdout + done.stderr
    listings.wait_for(published(node_name()))
    assert not any(node_name() in listing for listing in listings.all())
    [rewrite] = events.named("proxy_rewrite")
    assert rewrite["node"] == mine


def test_create2_returns_the_apps_path_and_the_published_stat(
    app: KazooClient, registry: KazooClient, providers: str, events: Events
) -> None:
    """A create2 (what Curator sends; kazoo with include_data) answers with the app's path
    and the stat of the published node."""
    registry.ensure_path(providers)
    mine = f"{providers}/{node_name()}"
    path, stat = app.create(mine, b"", ephemeral=True, include_data=True)
    assert path == mine
    assert stat == registry.exists(f"{providers}/{published(node_name())}")
    assert [e["op"] for e in events.named("proxy_rewrite")] == ["create2"]


class LateMapper(InventoryMapper):
    """A mapping not known until the test says so; tells when a request asked for it."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = threading.Event()

    def ready(self) -> bool:
        known = super().ready()
        if not known:
            self.asked.set()
        return known


def test_requests_wait_for_the_mapping(
    zookeeper: ZooKeeperServer, registry: KazooClient, providers: str
) -> None:
    """A registration sent before the app's bindings are known waits for them, in order,
    and is published once they are."""
    events, mapper = Events(), LateMapper()
    proxy = proxy_for([("127.0.0.1", zookeeper.port)], events, mapper)
    app = client_of(proxy)
    try:
        registry.ensure_path(providers)
        mine = f"{providers}/{node_name()}"
        pending = app.create_async(mine, b"", ephemeral=True)
        assert mapper.asked.wait(10)
        mapper.update([static_container()], ADVERTISED)

        assert pending.get(timeout=10) == mine
        assert registry.get_children(providers) == [published(node_name())]
        [held] = events.named("proxy_request_held")
        assert held["mapping_known"] is True
    finally:
        app.stop()
        app.close()
        proxy.stop()


def test_bad_frames_close_only_their_connection(
    proxy: ProxyServer, app: KazooClient, events: Events
) -> None:
    """A frame over jute.maxbuffer closes its own connection; the app's goes on; a
    four-letter word still gets the server's answer."""
    with socket.create_connection(("127.0.0.1", proxy.address[1]), timeout=10) as bad:
        bad.sendall(struct.pack(">i", 0x7FFFFFF0) + b"x" * 64)
        assert bad.recv(100) == b""
    assert app.exists("/") is not None
    wait_until(lambda: events.named("proxy_connection_closed"), 5)
    [closed] = events.named("proxy_connection_closed")
    assert "jute.maxbuffer" in closed["reason"]
    with socket.create_connection(("127.0.0.1", proxy.address[1]), timeout=10) as word:
        word.sendall(b"ruok")
        assert word.recv(100) == b"imok"


def test_another_hosts_registration_passes_untouched(
    app: KazooClient, registry: KazooClient, providers: str
) -> None:
    """A registration of an address that is not the app's is written exactly as sent."""
    registry.ensure_path(providers)
    other = node_name(host="10.1.4.2")
    app.create(f"{providers}/{other}", b"10.1.4.2", ephemeral=True)
    assert registry.get_children(providers) == [other]
    assert registry.get(f"{providers}/{other}")[0] == b"10.1.4.2"


@pytest.fixture
def unanswered() -> Iterator[tuple[str, int]]:
    """A loopback address whose connects hang: its listener's accept queue is full, so the
    kernel drops further SYNs."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    fillers = []
    try:
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(listener.getsockname())
            fillers.append(filler)
        yield listener.getsockname()
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_what_comes_before_the_server_connection_is_relayed(
    zookeeper: ZooKeeperServer, events: Events, unanswered: tuple[str, int]
) -> None:
    """Bytes a client sends while the proxy is still connecting upstream (here: past a
    first server that never answers) reach the server once it is connected. (Python 3.11.2,
    the image's, reads them although reading is paused until then; later versions do not.)"""
    proxy = proxy_for([unanswered, ("127.0.0.1", zookeeper.port)], events)
    try:
        with socket.create_connection(("127.0.0.1", proxy.address[1]), timeout=10) as word:
            word.sendall(b"ruok")
            assert word.recv(100) == b"imok"
        [opened] = events.named("proxy_connection_opened")
        assert opened["upstream"] == f"127.0.0.1:{zookeeper.port}"
    finally:
        proxy.stop()
