"""Persistent registrations (Dubbo's dynamic=false, dubbo-py) on real servers: a container's
label ``dubbo-nat-sidecar.persistent-application`` claims them; other applications' and
ambiguous ones stay as they are; the rewrites survive the sidecar's restarts and go with the
container; mirror mode mirrors them; a persistent instance is rewritten in place."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from docker.models.containers import Container
from kazoo.client import KazooClient

from sidecar import urls
from sidecar.model import Endpoint
from sidecar.ownership import read_marker
from sidecar.quoting import shorten
from testbed.engine import DockerEngine
from testbed.networks import container_ip, published_port
from testbed.polling import wait_until
from testbed.sidecar_process import SidecarProcess
from testbed.zookeeper import ZooKeeperServer

from .helpers import children, one_shot, original_name, remove_left_behind, rewritten_name

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

LABEL = "dubbo-nat-sidecar.persistent-application"
CLAIMED = {LABEL: "demo-provider"}  # the testbed provider's application


@pytest.fixture(autouse=True)
def persistent_nodes_removed(registry: KazooClient, root: str) -> Iterator[None]:
    """Persistent nodes outlive every session: removed with their records once the test's
    sidecars and containers are gone (this fixture is set up first, so torn down last)."""
    yield
    remove_left_behind(registry, root, f"{root}-services", f"{root}-external")


def test_claimed_persistent_registration_is_rewritten_outlives_restarts_and_goes_with_the_container(
    root: str,
    providers: str,
    registry: KazooClient,
    engine: DockerEngine,
    zookeeper: ZooKeeperServer,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """A labelled container's persistent registration is replaced by a persistent rewrite
    carrying the sidecar's marker; the sidecar killed and started again with a new session
    (another state file) leaves it exactly as it is, and status shows the live sidecar
    managing it; the container's stop removes it."""
    provider = start_provider("--persistent", labels=CLAIMED)
    sidecar = start_sidecar()
    rewritten = f"{providers}/{rewritten_name(provider)}"
    wait_until(lambda: registry.exists(rewritten), 5, message="not rewritten")
    assert children(registry, providers) == [rewritten_name(provider)]
    data, stat = registry.get(rewritten)
    marker = read_marker(data)
    assert marker is not None
    assert (marker.container, stat.ephemeralOwner) == (provider.id, 0)
    [line] = sidecar.logged("rewrite")
    assert LABEL in line["decided_by"]

    sidecar.kill()
    again = start_sidecar()
    assert again.session != sidecar.session
    assert registry.get(rewritten)[1] == stat  # untouched: same creation, version, owner
    assert [e for e in again.events() if e["event"] in ("rewrite", "update", "restore")] == []
    status = one_shot("status", zookeeper.connect_string, root, engine.url)
    assert status.returncode == 0, status.stderr
    [row] = status.stdout.splitlines()[1:]
    assert row.endswith(f"the per-host sidecar (session 0x{again.session:x}), a persistent node")

    provider.stop(timeout=5)
    wait_until(lambda: children(registry, providers) == [], 10, message="rewrite outlived it")
    [removed] = again.logged("remove")
    assert removed["node"] == shorten(rewritten)  # as logs show long names


def test_other_applications_and_ambiguous_persistent_registrations_are_left_alone(
    root: str,
    providers: str,
    registry: KazooClient,
    engine: DockerEngine,
    zookeeper: ZooKeeperServer,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """A persistent registration of another application at the labelled container's address
    (a replica elsewhere) is never touched; a second persistent registration of the same
    service at that endpoint makes both ambiguous: left alone, logged and shown by plan with
    the label in DECIDED BY. Once the other one is gone, the container's is rewritten."""
    provider = start_provider("--persistent", labels=CLAIMED)
    ours = original_name(provider)
    address = f"{container_ip(provider)}:20880"
    end = urls.parse(ours).host_port_span[1]
    replica = ours.replace("demo-provider", "billing")
    # Another registration of the same service (it differs where logs still show it).
    twin = ours[:end] + ours[end:].replace("anyhost%3Dtrue", "anyhost%3Dfalse")
    assert twin != ours
    for name in (replica, twin):
        registry.create(f"{providers}/{name}", address.encode())
    sidecar = start_sidecar()

    def left_alone() -> dict[str, dict[str, str]]:
        found = {e["node"]: e for e in sidecar.events("left_alone")}
        mine = {shorten(f"{providers}/{name}") for name in (ours, replica, twin)}
        return found if mine <= set(found) else {}

    left = wait_until(left_alone, 5, message="not all three reported")
    assert len({shorten(f"{providers}/{name}") for name in (ours, replica, twin)}) == 3
    assert left[shorten(f"{providers}/{replica}")]["reason"].startswith("persistent node of")
    for name in (ours, twin):
        assert "ambiguous" in left[shorten(f"{providers}/{name}")]["reason"]
        assert LABEL in left[shorten(f"{providers}/{name}")]["decided_by"]
    planned = one_shot("plan", zookeeper.connect_string, root, engine.url)
    assert planned.returncode == 0, planned.stderr
    rows = [r for r in planned.stdout.splitlines() if r.startswith("leave")]
    assert len([r for r in rows if f"label {LABEL}" in r]) == 3
    assert sorted(children(registry, providers)) == sorted([ours, replica, twin])

    registry.delete(f"{providers}/{twin}")
    wanted = sorted([rewritten_name(provider), replica])
    wait_until(lambda: sorted(children(registry, providers)) == wanted, 5,
               message="not rewritten once unambiguous")  # fmt: skip
    assert registry.get(f"{providers}/{replica}")[0] == address.encode()


def test_mirror_mode_mirrors_a_claimed_persistent_registration(
    root: str,
    providers: str,
    registry: KazooClient,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """In mirror mode the persistent original stays and its mirror appears under the mirror
    root."""
    provider = start_provider("--persistent", labels=CLAIMED)
    start_sidecar("--mode", "mirror", "--mirror-root", f"{root}-external")
    mirror = f"{root}-external/com.example.DemoService/providers"
    wait_until(lambda: children(registry, mirror) == [rewritten_name(provider)], 5,
               message="not mirrored")  # fmt: skip
    assert children(registry, providers) == [original_name(provider)]


def test_a_claimed_persistent_instance_is_rewritten_in_place_and_removed_with_its_container(
    root: str,
    registry: KazooClient,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """A persistent application-level instance of the labelled container keeps its node
    (persistent, its name) with the published endpoint in its data; when the container is
    killed (no unregistration) the per-host sidecar removes it: no session would."""
    services = f"{root}-services"
    provider = start_provider("--persistent", "--instance-root", services, labels=CLAIMED)
    path = f"{services}/demo-provider/{container_ip(provider)}:20880"
    start_sidecar("--services-root", services)
    published = Endpoint("127.0.0.1", published_port(provider, "20880/tcp"))

    def in_place() -> bool:
        doc = json.loads(registry.get(path)[0])
        return Endpoint(doc["address"], doc["port"]) == published

    wait_until(in_place, 5, message="instance not rewritten in place")
    assert registry.get(path)[1].ephemeralOwner == 0
    provider.kill()
    wait_until(lambda: registry.exists(path) is None, 10, message="instance outlived it")
