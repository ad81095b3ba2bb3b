"""The real Curator peer (Curator 5's ServiceDiscovery, as Dubbo 3 uses it) on a real ZooKeeper:
what it writes, how it updates and re-registers, what a Curator consumer reads; and ZooKeeper's
own Java CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from kazoo.client import KazooClient

from sidecar import instances
from sidecar.model import Endpoint
from testbed.curator import CuratorPeer, dubbo_metadata
from testbed.engine import RUN_LABEL, DockerEngine
from testbed.networks import container_ip, published_port
from testbed.polling import wait_until
from testbed.sessions import expire_session
from testbed.sidecar_process import SidecarProcess
from testbed.zkcli import ZooKeeperShell, zk_cli
from testbed.zookeeper import ZooKeeperServer

from .helpers import children, pong

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

APP = "curator-app"
# The fields of a Dubbo 3 instance node, in the order Curator writes them.
CURATOR_FIELDS = ["name", "id", "address", "port", "sslPort", "payload", "registrationTimeUTC",
                  "serviceType", "uriSpec"]  # fmt: skip


@pytest.fixture
def services(root: str) -> str:
    """An instance root of this test's own."""
    return f"{root}-services"


@pytest.fixture
def start_peer(
    start_curator_peer: Callable[..., CuratorPeer], services: str
) -> Callable[..., CuratorPeer]:
    """A peer on this test's instance root (``host=True``: on this host)."""
    return lambda host=False: start_curator_peer(base_path=services, host=host)


def register_in_container(peer: CuratorPeer, revision: str = "rev-1") -> tuple[str, str]:
    """Register the peer's container address:20880 as Dubbo 3 does; (node path, instance id)."""
    assert peer.container is not None
    address = container_ip(peer.container)
    path = peer.register(APP, address, 20880, dubbo_metadata(20880, revision))
    return path, f"{address}:20880"


def revision(doc: dict[str, Any]) -> str:
    return str(doc["payload"]["metadata"]["dubbo.metadata.revision"])


def test_registered_instance_is_dubbo_3_json(
    registry: KazooClient, services: str, start_peer: Callable[..., CuratorPeer]
) -> None:
    """registerService from a container writes an ephemeral node in the peer's session at
    /services/<app>/<ip>:20880 whose Curator JSON the sidecar's parser reads as that endpoint,
    with the payload class and fields Dubbo 3 writes; the peer's port answers when published."""
    peer = start_peer()
    path, instance_id = register_in_container(peer)
    assert path == f"{services}/{APP}/{instance_id}"

    data, stat = registry.get(path)
    parsed = instances.parse(instance_id, data)
    assert parsed.endpoint == Endpoint(instance_id.split(":")[0], 20880)
    assert parsed.application == APP
    doc = json.loads(data)
    assert list(doc) == CURATOR_FIELDS
    assert (doc["sslPort"], doc["serviceType"], doc["uriSpec"]) == (None, "DYNAMIC", None)
    payload = doc["payload"]
    assert list(payload) == ["@class", "id", "name", "metadata"]
    assert payload["@class"] == "org.apache.dubbo.registry.zookeeper.ZookeeperInstance"
    assert (payload["id"], payload["name"]) == (instance_id, APP)
    assert json.loads(payload["metadata"]["dubbo.endpoints"]) == [
        {"port": 20880, "protocol": "dubbo"}
    ]
    assert stat.ephemeralOwner == peer.session[0]

    assert peer.container is not None
    assert pong("127.0.0.1", published_port(peer.container)) == "pong curator-peer 20880"


def test_update_service_rewrites_the_same_node(
    registry: KazooClient, start_peer: Callable[..., CuratorPeer]
) -> None:
    """updateService with a new revision is a setData of the peer's own node: same node
    (creation zxid, owner), data version + 1, the new revision in the metadata."""
    peer = start_peer()
    path, instance_id = register_in_container(peer)
    before = registry.get(path)[1]

    assert peer.update(instance_id, {"dubbo.metadata.revision": "rev-2"}) == path
    data, after = registry.get(path)
    assert (after.czxid, after.ephemeralOwner) == (before.czxid, before.ephemeralOwner)
    assert after.version == before.version + 1
    assert revision(json.loads(data)) == "rev-2"
    assert instances.parse(instance_id, data).endpoint.port == 20880


def test_consumer_queries_and_caches_what_is_registered(
    start_peer: Callable[..., CuratorPeer],
) -> None:
    """A consumer peer on the host sees the provider peer's instance through
    queryForInstances and a ServiceCache (address, port, payload metadata), the cache
    follows an update, and both see nothing once the provider unregisters."""
    provider = start_peer()
    consumer = start_peer(host=True)
    _, instance_id = register_in_container(provider)
    address = instance_id.split(":")[0]

    [found] = consumer.query(APP)
    assert (found["address"], found["port"], found["id"]) == (address, 20880, instance_id)
    assert revision(found) == "rev-1"
    wait_until(lambda: [revision(i) for i in consumer.cached(APP)] == ["rev-1"], 10,
               message="the ServiceCache did not load the instance")  # fmt: skip

    provider.update(instance_id, {"dubbo.metadata.revision": "rev-2"})
    wait_until(lambda: [revision(i) for i in consumer.cached(APP)] == ["rev-2"], 10,
               message="the ServiceCache did not follow the update")  # fmt: skip

    provider.unregister(instance_id)
    assert consumer.query(APP) == []
    wait_until(lambda: consumer.cached(APP) == [], 10, message="the cache kept the instance")


def test_dropped_connection_makes_curator_register_again(
    registry: KazooClient, start_peer: Callable[..., CuratorPeer]
) -> None:
    """When the peer's connection drops and comes back with the same session, Curator
    registers its instance again: a new node (new creation zxid) in the same session, with
    the same JSON."""
    peer = start_peer()
    path, _ = register_in_container(peer)
    data, before = registry.get(path)
    session = peer.session[0]

    peer.drop_connection()
    peer.wait_for_event("connection", state="RECONNECTED")

    def registered_again() -> bool:
        stat = registry.exists(path)
        return stat is not None and stat.czxid != before.czxid

    wait_until(registered_again, 15, message="Curator did not re-register")
    new_data, after = registry.get(path)
    assert after.ephemeralOwner == session == peer.session[0]
    assert json.loads(new_data) == json.loads(data)


def test_expired_session_makes_curator_register_again(
    zookeeper: ZooKeeperServer, registry: KazooClient, start_peer: Callable[..., CuratorPeer]
) -> None:
    """When the peer's session is expired from outside (a second client closing it with the
    session id and password the peer printed), the node goes, Curator gets a new session and
    registers the instance again in it."""
    peer = start_peer()
    path, _ = register_in_container(peer)
    old_session, password = peer.session

    expire_session(zookeeper.connect_string, old_session, password)
    reconnected = wait_until(
        lambda: [e for e in peer.events("connection") if e["state"] == "RECONNECTED"], 30,
        message="the peer did not reconnect",
    )  # fmt: skip
    new_session = int(reconnected[0]["session"], 16)
    assert new_session != old_session

    def owner() -> int | None:
        stat = registry.exists(path)
        return int(stat.ephemeralOwner) if stat is not None else None

    wait_until(lambda: owner() == new_session, 15, message="not registered in the new session")


def test_provider_update_after_a_rewrite_reaches_consumers(
    services: str,
    registry: KazooClient,
    start_peer: Callable[..., CuratorPeer],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """With the sidecar running, the Curator provider's instance is rewritten to the published
    address; the provider's own updateService (a new revision) then succeeds, and a Curator
    consumer sees the new revision at the published address within 1 s (issue 13)."""
    provider = start_peer()
    consumer = start_peer(host=True)
    _, instance_id = register_in_container(provider)
    assert provider.container is not None
    published = Endpoint("127.0.0.1", published_port(provider.container))
    start_sidecar("--services-root", services)

    def seen() -> list[tuple[Endpoint, str]]:
        return [(Endpoint(i["address"], i["port"]), revision(i)) for i in consumer.query(APP)]

    wait_until(lambda: seen() == [(published, "rev-1")], 5, message="instance not rewritten")
    provider.update(instance_id, {"dubbo.metadata.revision": "rev-2"})  # NoNode when renamed
    wait_until(lambda: seen() == [(published, "rev-2")], 1.0,
               message="the update did not reach consumers at the published address")  # fmt: skip
    assert len(children(registry, f"{services}/{APP}")) == 1


# -- ZooKeeper's own Java CLI ------------------------------------------------------------------


def test_zookeeper_cli_creates_nodes_on_the_host_and_in_a_container(
    engine: DockerEngine,
    zookeeper: ZooKeeperServer,
    registry: KazooClient,
    root: str,
    run_id: str,
) -> None:
    """ZooKeeperMain run once on the host creates an ephemeral node and reports it; run as a
    shell in a container it keeps its session between commands, and quitting closes the
    session, so its ephemeral node goes at once."""
    registry.ensure_path(root)
    done = zk_cli(zookeeper.connect_string, "create", "-e", f"{root}/once", "data")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Created {root}/once" in done.stderr.splitlines()
    data, stat = registry.get(f"{root}/once")
    assert (data, stat.ephemeralOwner != 0) == (b"data", True)

    shell = ZooKeeperShell.in_container(
        engine, f"{engine.bridge_gateway()}:{zookeeper.port}", labels={RUN_LABEL: run_id}
    )
    try:
        shell.run(f"create -e {root}/shell hello", expect=f"Created {root}/shell")
        assert shell.run(f"create -e {root}/shell again", expect="Node already exists")
        assert registry.get(f"{root}/shell")[0] == b"hello"
        shell.quit()
        assert registry.exists(f"{root}/shell") is None
    finally:
        shell.close()
