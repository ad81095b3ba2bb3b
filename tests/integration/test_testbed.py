"""Integration tests proving the test harness (``testbed``) against real ZooKeeper and Docker."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from docker.models.containers import Container
from kazoo.client import KazooClient  # type: ignore[import-untyped,unused-ignore]

from testbed.consumer import call_providers, parse_provider_node, run_as_group
from testbed.engine import DockerEngine
from testbed.ensemble import ZooKeeperEnsemble
from testbed.firewall import unreachable_for_group
from testbed.images import container_output, output_lines, wait_for_line
from testbed.networks import container_ip, published_port
from testbed.polling import wait_until
from testbed.sessions import expire_session
from testbed.zookeeper import ZooKeeperServer

from .conftest import INTERFACE

pytestmark = pytest.mark.integration

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(60)
def test_provider_container_registers_its_container_address(
    engine: DockerEngine,
    zookeeper: ZooKeeperServer,
    start_provider: Callable[..., Container],
    root: str,
    registry: KazooClient,
) -> None:
    """A containerised provider registers an ephemeral node naming its container IP:20880."""
    container = start_provider()
    address = container_ip(container)
    node_path = wait_for_line(container, "registered ")
    session_id = int(wait_for_line(container, "session ").split()[0], 16)

    providers = f"{root}/{INTERFACE}/providers"
    children = registry.get_children(providers)
    assert [f"{providers}/{name}" for name in children] == [node_path]
    url, host, port = parse_provider_node(children[0])
    assert (host, port) == (address, 20880)
    assert url.startswith(f"dubbo://{address}:20880/{INTERFACE}?")
    assert "application=demo-provider" in url
    data, stat = registry.get(node_path)
    assert data == address.encode()
    assert stat.ephemeralOwner == session_id
    assert registry.exists(f"{root}/{INTERFACE}/configurators") is not None


@pytest.mark.timeout(60)
def test_restricted_consumer_cannot_reach_container_but_published_port_answers(
    engine: DockerEngine,
    zookeeper: ZooKeeperServer,
    start_provider: Callable[..., Container],
    root: str,
) -> None:
    """Under the firewalled gid the container IP is refused; 127.0.0.1:<published> still pongs."""
    container = start_provider()
    address = container_ip(container)
    host_port = published_port(container, "20880/tcp")

    # Control: without the restriction the host does route to the container address.
    [unrestricted] = call_providers(zookeeper.connect_string, root, INTERFACE)
    assert unrestricted.ok, unrestricted

    with socket.create_connection(("127.0.0.1", host_port), timeout=5) as sock:
        sock.sendall(b"ping\n")
        assert sock.makefile("rb").readline() == f"pong demo-provider {address}:20880\n".encode()

    with unreachable_for_group([engine.bridge_subnet()]) as gid:
        registry_code, [listed] = run_as_group(
            gid, ["--zookeeper", zookeeper.connect_string, "--root", root]
        )
        direct_code, [answer] = run_as_group(gid, ["--address", f"127.0.0.1:{host_port}"])

    assert registry_code == 1
    assert listed["address"] == f"{address}:20880"  # ZooKeeper on loopback was reachable
    assert not listed["ok"]
    assert "refused" in listed["error"].lower()

    assert direct_code == 0
    assert answer["reply"] == f"pong demo-provider {address}:20880"


@pytest.mark.timeout(60)
def test_provider_reregisters_after_its_session_is_expired(
    zookeeper: ZooKeeperServer,
    start_provider: Callable[..., Container],
    registry: KazooClient,
) -> None:
    """Expiring the provider's session deletes its node; the provider re-creates it, like Dubbo."""
    container = start_provider()
    node_path = wait_for_line(container, "registered ")
    session_hex, password_hex = wait_for_line(container, "session ").split()
    session_id = int(session_hex, 16)

    expire_session(zookeeper.connect_string, session_id, bytes.fromhex(password_hex))

    assert wait_for_line(container, "registered ", count=2) == node_path
    new_session = int(wait_for_line(container, "session ", count=2).split()[0], 16)
    assert new_session != session_id
    stat = wait_until(lambda: registry.exists(node_path), 10, message="re-registered node missing")
    assert stat.ephemeralOwner == new_session

    container.stop(timeout=10)
    container.reload()
    assert container.attrs["State"]["ExitCode"] == 0, container_output(container)
    assert output_lines(container, "unregistered ") == [f"unregistered {node_path}"]


@pytest.mark.timeout(90)
def test_ensemble_elects_a_new_leader_when_the_leader_dies(tmp_path: Path) -> None:
    """A three-server ensemble serves, survives killing its leader, and takes it back."""
    with ZooKeeperEnsemble(tmp_path / "ensemble", size=3) as ensemble:
        old_leader = ensemble.leader()
        old_leader.kill()
        new_leader = ensemble.leader(timeout=30)
        assert new_leader is not old_leader

        client = KazooClient(hosts=ensemble.connect_string, timeout=5.0)
        client.start(timeout=15)
        try:
            client.create("/failover", b"ok")
            old_leader.restart()
            assert old_leader.mode() == "follower"
            assert client.get("/failover")[0] == b"ok"
        finally:
            client.stop()
            client.close()
