"""Proxy mode with real Curator clients (Curator 5's ServiceDiscovery, as Dubbo 3 uses it):
a registration refused for want of the app's bindings is retried by Curator itself and
published once they are known; two connections of one app see the same instances through a
proxy restart and the app's unregister; the registry never holds the container address."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient

from sidecar.proxy import InventoryMapper
from testbed.curator import CuratorPeer, dubbo_metadata
from testbed.polling import wait_until
from testbed.zookeeper import ZooKeeperServer

from .proxy_helpers import (
    ADDRESS,
    ADVERTISED,
    PORTS,
    Events,
    Sentinel,
    proxy_for,
    static_container,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

APP = "shop"
MINE = f"{ADDRESS}:20880"  # the instance id the app registers
PUBLISHED = f"{ADVERTISED}:{PORTS[20880]}"


@pytest.fixture
def services(root: str, registry: KazooClient) -> Iterator[str]:
    """The services root of this test, watched for container addresses from start to end."""
    path = f"{root}-services"
    sentinel = Sentinel(registry, f"{path}/{APP}")
    yield path
    assert sentinel.stop() == [], "a container address reached the registry"


@pytest.fixture
def peers(curator_classes: Path, tmp_path: Path) -> Iterator[Callable[[int, str], CuratorPeer]]:
    """Start Curator peers on this host connecting to a port on loopback; all closed at the
    end."""
    started: list[CuratorPeer] = []

    def start(port: int, base_path: str) -> CuratorPeer:
        stderr = tmp_path / f"peer-{len(started)}.stderr"
        peer = CuratorPeer.on_host(
            curator_classes, f"127.0.0.1:{port}", base_path=base_path, stderr=stderr
        )
        started.append(peer)
        return peer

    yield start
    for peer in started:
        peer.close()


def ids(instances: list[dict[str, Any]]) -> list[str]:
    return sorted(str(i["id"]) for i in instances)


def test_curator_retries_a_refused_registration_until_the_bindings_are_known(
    zookeeper: ZooKeeperServer,
    registry: KazooClient,
    services: str,
    peers: Callable[[int, str], CuratorPeer],
) -> None:
    """The app's bindings are not known when it registers: the create is refused (the
    operation timed out), Curator's retry loop sends it again, and once the sidecar knows
    the bindings the instance is published; the app's registerService never failed."""
    events, mapper = Events(), InventoryMapper()
    proxy = proxy_for([("127.0.0.1", zookeeper.port)], events, mapper, services_root=services)
    try:
        app = peers(proxy.address[1], services)

        def bindings_once_refused() -> None:
            wait_until(lambda: events.named("proxy_request_refused"), 30)
            mapper.update([static_container()], ADVERTISED)

        later = threading.Thread(target=bindings_once_refused, daemon=True)
        later.start()
        app.register(APP, ADDRESS, 20880, dubbo_metadata(20880, "r1"))
        later.join(30)
        assert events.named("proxy_request_refused") != []
        assert registry.get_children(f"{services}/{APP}") == [PUBLISHED]
    finally:
        proxy.stop()


def test_two_connections_of_the_app_see_one_view_through_restarts_and_unregisters(
    zookeeper: ZooKeeperServer,
    registry: KazooClient,
    services: str,
    peers: Callable[[int, str], CuratorPeer],
) -> None:
    """The app registers its instance on one connection; the ServiceCaches of both its
    connections hold it as the app wrote it, the registry holds it published. A proxy
    restart (both reconnect, the first re-registers) changes neither; after the app
    unregisters, both caches and the registry are empty."""
    events = Events()
    upstream = [("127.0.0.1", zookeeper.port)]
    proxy = proxy_for(upstream, events, services_root=services)
    port = proxy.address[1]
    try:
        first, second = peers(port, services), peers(port, services)
        first.register(APP, ADDRESS, 20880, dubbo_metadata(20880, "r1"))

        def both() -> tuple[list[str], list[str]]:
            return ids(first.cached(APP)), ids(second.cached(APP))

        wait_until(lambda: both() == ([MINE], [MINE]), 10, message=f"caches {both()}")
        assert registry.get_children(f"{services}/{APP}") == [PUBLISHED]

        proxy.stop()
        proxy = proxy_for(upstream, events, port=port, services_root=services)
        first.wait_for_event("connection", state="RECONNECTED", timeout=30)
        second.wait_for_event("connection", state="RECONNECTED", timeout=30)

        def settled() -> tuple[tuple[list[str], list[str]], list[str]]:
            return both(), registry.get_children(f"{services}/{APP}")

        # Curator re-registers on reconnecting (a delete, then a create): the registry may
        # be empty for a moment, and then holds the instance published again.
        wait_until(lambda: settled() == (([MINE], [MINE]), [PUBLISHED]), 10,
                   message=f"caches and registry {settled()}")  # fmt: skip

        first.unregister(MINE)
        wait_until(lambda: both() == ([], []), 10, message=f"caches {both()}")
        assert registry.get_children(f"{services}/{APP}") == []
    finally:
        proxy.stop()
