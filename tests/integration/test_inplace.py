"""Instances rewritten in place, with the real Curator 5 ServiceDiscovery (as Dubbo 3 uses it)
in a container with a published port: the node stays the provider's through its updates,
re-registrations and death; an instance an earlier version renamed is migrated without a gap."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from sidecar import instances
from sidecar.model import Endpoint
from sidecar.ownership import Marker
from testbed import legacy
from testbed.curator import CuratorPeer, dubbo_metadata
from testbed.engine import DockerEngine
from testbed.history import ChildrenHistory
from testbed.networks import container_ip, published_port
from testbed.polling import wait_until
from testbed.sidecar_process import SidecarProcess
from testbed.zookeeper import ZooKeeperServer

from .helpers import children, remove_left_behind

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

APP = "curator-app"
WRITES = ("rewrite", "rewrite-in-place", "update", "remove", "restore", "drop-original")


@pytest.fixture
def services(root: str) -> str:
    return f"{root}-services"


@pytest.fixture(autouse=True)
def records_removed(registry: KazooClient, services: str) -> Iterator[None]:
    """The records of the sidecar's own instance nodes outlive the test: removed once its
    sidecars and containers are gone (set up first, so torn down last)."""
    yield
    remove_left_behind(registry, services)


@pytest.fixture
def start_peer(
    start_curator_peer: Callable[..., CuratorPeer], services: str
) -> Callable[..., CuratorPeer]:
    return lambda host=False: start_curator_peer(base_path=services, host=host)


def register(peer: CuratorPeer) -> tuple[str, str, Endpoint]:
    """Register the peer's container address:20880 as Dubbo 3 does: (node path, instance id,
    the published endpoint consumers elsewhere must see)."""
    assert peer.container is not None
    address = container_ip(peer.container)
    path = peer.register(APP, address, 20880, dubbo_metadata(20880, "rev-1"))
    return path, f"{address}:20880", Endpoint("127.0.0.1", published_port(peer.container))


def seen_by(consumer: CuratorPeer, cached: bool = False) -> list[tuple[Endpoint, str]]:
    """What a Curator consumer sees: (endpoint, metadata revision) per instance, through
    queryForInstances or its ServiceCache."""
    found = consumer.cached(APP) if cached else consumer.query(APP)
    return [(Endpoint(i["address"], i["port"]), _revision(i)) for i in found]


def _revision(doc: dict[str, Any]) -> str:
    return str(doc["payload"]["metadata"]["dubbo.metadata.revision"])


def writes_to(sidecar: SidecarProcess, path: str) -> list[str]:
    return [e["event"] for e in sidecar.events() if e["event"] in WRITES and e["node"] == path]


def test_curator_provider_keeps_its_node_through_updates_reconnects_and_death(
    services: str,
    registry: KazooClient,
    start_peer: Callable[..., CuratorPeer],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """The instance is rewritten in its own node (same name, the provider's session);
    updateService with a new revision reaches a consumer's query and ServiceCache at the
    published address within 1 s; a dropped connection makes Curator register again and the
    new node is rewritten within 1 s of its creation (server clock); when the provider's
    container is killed the node goes with its session, the sidecar writing nothing (no
    probe: --probe-seconds 0)."""
    provider, consumer = start_peer(), start_peer(host=True)
    path, instance_id, published = register(provider)
    session = provider.session[0]
    sidecar = start_sidecar("--services-root", services, "--probe-seconds", "0")

    wait_until(lambda: seen_by(consumer) == [(published, "rev-1")], 5, message="not rewritten")
    assert children(registry, f"{services}/{APP}") == [instance_id]
    assert registry.get(path)[1].ephemeralOwner == session
    assert writes_to(sidecar, path) == ["rewrite-in-place"]

    provider.update(instance_id, {"dubbo.metadata.revision": "rev-2"})
    wait_until(lambda: seen_by(consumer) == [(published, "rev-2")], 1.0,
               message="the update did not reach a query at the published address")  # fmt: skip
    wait_until(lambda: seen_by(consumer, cached=True) == [(published, "rev-2")], 1.0,
               message="the update did not reach the ServiceCache")  # fmt: skip

    created = registry.get(path)[1].czxid
    provider.drop_connection()

    def rewritten_again() -> Any:
        data, stat = registry.get(path)
        fresh = stat.czxid != created and json.loads(data)["address"] == published.host
        return stat if fresh else None

    # Curator deletes its node before creating it again: absent for a moment.
    stat = wait_until(rewritten_again, 20, message="the re-registration was not rewritten",
                      retry_on=(NoNodeError,))  # fmt: skip
    # One setData (the sidecar's) since Curator created it: its delay, on the server's clock.
    assert stat.version == 1
    assert stat.mtime - stat.ctime < 1000
    assert stat.ephemeralOwner == session

    # A rewrite is logged after it commits: wait for the third line (first pass, update,
    # re-registration) before taking the count that the container's death must not change.
    sidecar.logged("rewrite-in-place", count=3)
    written = writes_to(sidecar, path)
    assert provider.container is not None
    provider.container.kill()
    wait_until(lambda: registry.exists(path) is None, 20, message="node outlived its session")
    assert writes_to(sidecar, path) == written


def test_an_instance_an_earlier_version_renamed_is_migrated_without_a_gap(
    tmp_path: Path,
    engine: DockerEngine,
    zookeeper: ZooKeeperServer,
    services: str,
    registry: KazooClient,
    start_peer: Callable[..., CuratorPeer],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """An earlier version renamed the instance to its published endpoint in its session and
    remembered it in its state file. Resuming that session, the sidecar puts the rewrite back
    under the provider's node name in one transaction (a watching consumer never sees the
    application without an instance); the provider's own update then succeeds and reaches
    consumers; once Curator registers again the node is the provider's, rewritten in place."""
    provider, consumer = start_peer(), start_peer(host=True)
    path, instance_id, published = register(provider)
    assert provider.container is not None
    app = f"{services}/{APP}"
    original = registry.get(path)[0]
    renamed = f"{app}/{published.host}:{published.port}"
    data = instances.rewrite(instances.parse(instance_id, original), published, lambda p: None)[1]
    earlier = legacy.rename(zookeeper.connect_string, path, renamed, data)
    info = engine.client.info()
    engine_id = f"{info['ID']}@{info.get('Name', '')}"
    endpoint = instances.endpoint_of(instance_id)
    assert endpoint is not None
    assert provider.container.id is not None
    marker = Marker(instance_id, endpoint, provider.container.id, engine_id,
                    provider.session[0], original_data=original)  # fmt: skip
    state_file = tmp_path / "earlier-version.json"
    legacy.remember(state_file, earlier, engine_id, renamed, data, marker)
    watched = ChildrenHistory(registry, app)

    sidecar = start_sidecar("--services-root", services, "--state-file", str(state_file))

    wait_until(lambda: children(registry, app) == [instance_id], 5, message="not migrated")
    migrated, stat = registry.get(path)
    assert (migrated, stat.ephemeralOwner) == (data, earlier[0])  # the resumed session's
    assert writes_to(sidecar, renamed) == ["update"]

    provider.update(instance_id, {"dubbo.metadata.revision": "rev-2"})
    wait_until(lambda: seen_by(consumer) == [(published, "rev-2")], 1.0,
               message="the update did not reach consumers")  # fmt: skip
    # Until here the application always had its instance (Curator's own re-registration
    # below deletes and creates its node: a moment without it, with or without the sidecar).
    assert all(names for _, names in watched.entries)

    provider.drop_connection()
    session = provider.session[0]

    def providers_again() -> bool:
        found, stat = registry.get(path)
        return bool(stat.ephemeralOwner == session and json.loads(found)["port"] == published.port)

    wait_until(providers_again, 20, message="not rewritten in the provider's node",
               retry_on=(NoNodeError,))  # fmt: skip
