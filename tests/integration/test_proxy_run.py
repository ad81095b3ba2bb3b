"""``dubbo-sidecar run --proxy-listen`` beside an app: the app's registrations are born with the
published address in its own session, the proxy sidecar watches nothing in the registry, and
a per-host sidecar on the same engine leaves the app to it (plan and status say proxy)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from docker.models.containers import Container
from kazoo.client import KazooClient

from sidecar import urls
from sidecar.model import Endpoint
from testbed.curator import CuratorPeer, dubbo_metadata
from testbed.engine import RUN_LABEL, DockerEngine
from testbed.networks import published_port
from testbed.polling import wait_until
from testbed.sidecar_process import SidecarProcess
from testbed.zookeeper import ZooKeeperServer

from .conftest import INTERFACE
from .helpers import children, one_shot, original_name, pong
from .proxy_helpers import Listings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture
def pod(root: str, start_provider: Callable[..., Container]) -> Container:
    """The container that owns the app's network namespace, publishing 20880 with -P."""
    owner = start_provider("--root", f"{root}-pod", "--port", "20999")
    owner.reload()
    return owner


@pytest.fixture
def proxy_sidecar(
    tmp_path: Path, engine: DockerEngine, zookeeper: ZooKeeperServer, root: str, pod: Container
) -> Iterator[SidecarProcess]:
    """``run --proxy-listen 127.0.0.1:2181`` in the pod's network namespace (as a pod sidecar
    container would), reading the engine through the host's socket."""
    assert pod.id is not None
    sidecar = SidecarProcess(
        tmp_path / "proxy-sidecar.log",
        [
            *("--zookeeper", f"{engine.bridge_gateway()}:{zookeeper.port}", "--root", root),
            *("--services-root", f"{root}-services", "--docker-url", engine.url),
            *("--advertise-host", "127.0.0.1", "--proxy-listen", "127.0.0.1:2181"),
            *("--state-file", str(tmp_path / "proxy-state.json"), "--listen", ""),
            *("--scope", "app", "--container", pod.id, "--log-level", "debug"),
        ],
        prefix=["nsenter", f"--net=/proc/{pod.attrs['State']['Pid']}/ns/net"],
    ).start()
    try:
        sidecar.wait_for_event("lease_held")
        yield sidecar
    finally:
        if sidecar.running:
            sidecar.kill()


def test_an_app_registers_through_its_sidecar_s_proxy(
    zookeeper: ZooKeeperServer,
    engine: DockerEngine,
    registry: KazooClient,
    root: str,
    providers: str,
    pod: Container,
    proxy_sidecar: SidecarProcess,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """No window: a consumer never sees the container address; the registration is the
    app's own node; the per-host sidecar leaves it to the per-app one (proxy), and plan and
    status say so; the proxy sidecar holds no registry watch but its lease's."""
    host = start_sidecar("--scope", "host")
    listings = Listings(registry, providers)
    app = start_provider("--application", "through-proxy",
                         "--host", pod.attrs["NetworkSettings"]["IPAddress"], publish_all=False,
                         network_mode=f"container:{pod.id}", connect="127.0.0.1:2181")  # fmt: skip
    name = urls.parse(original_name(app)).with_endpoint(
        Endpoint("127.0.0.1", published_port(pod, "20880/tcp"))
    )
    listings.wait_for(name)
    assert not any(original_name(app) in seen for seen in listings.all())
    assert pong("127.0.0.1", published_port(pod, "20880/tcp")).startswith("pong through-proxy ")
    session = registry.get(f"{providers}/{name}")[1].ephemeralOwner
    assert session != proxy_sidecar.session  # the app's own session, not the sidecar's

    by_proxy = f"(proxy, session 0x{proxy_sidecar.session:x})"
    claimed = f"managed by the per-app sidecar of {pod.name} {by_proxy}"
    wait_until(lambda: any(e["reason"] == claimed for e in host.events("left_alone")), 10,
               message="the per-host sidecar did not leave the app to its proxy")  # fmt: skip
    assert not [e for e in host.events() if e["event"] in ("rewrite", "update", "remove")]
    planned = one_shot("plan", zookeeper.connect_string, root, engine.url)
    [row] = [r for r in planned.stdout.splitlines() if by_proxy in r]
    assert row.startswith("leave")
    assert pod.name is not None
    assert pod.name in row
    status = one_shot("status", zookeeper.connect_string, root, engine.url)
    port = published_port(pod, "20880/tcp")
    [line] = [r for r in status.stdout.splitlines() if by_proxy in r]
    assert re.match(rf"{INTERFACE}\s+127\.0\.0\.1:{port}\s", line)

    watched = _watches(zookeeper, proxy_sidecar.session)
    assert watched
    assert all(path.startswith("/dubbo-nat-sidecar/leases/") for path in watched)
    app.stop(timeout=10)
    wait_until(lambda: name not in children(registry, providers), 10, message="not removed")


def test_curator_registers_its_instance_through_the_proxy(
    engine: DockerEngine,
    curator_classes: Path,
    run_id: str,
    root: str,
    pod: Container,
    proxy_sidecar: SidecarProcess,
    start_curator_peer: Callable[..., CuratorPeer],
) -> None:
    """Dubbo 3's client (Curator ServiceDiscovery) in the app's namespace: its instance is
    born with the published address, its updateService succeeds, and a consumer on the host
    sees the published address and the new revision."""
    port = published_port(pod, "20880/tcp")
    services = f"{root}-services"
    with CuratorPeer.in_container(
        engine, curator_classes, "127.0.0.1:2181", labels={RUN_LABEL: run_id}, base_path=services,
        network=f"container:{pod.id}",
    ) as peer:  # fmt: skip
        address = pod.attrs["NetworkSettings"]["IPAddress"]
        peer.register("shop", address, 20880, dubbo_metadata(20880, "rev-1"))
        consumer = start_curator_peer(base_path=services, host=True)
        wait_until(lambda: [(i["address"], i["port"]) for i in consumer.query("shop")]
                   == [("127.0.0.1", port)], 10, message="not published")  # fmt: skip
        peer.update(f"{address}:20880", {"dubbo.metadata.revision": "rev-2"})
        wait_until(lambda: [i["payload"]["metadata"]["dubbo.metadata.revision"]
                            for i in consumer.query("shop")] == ["rev-2"], 5)  # fmt: skip


def _watches(zookeeper: ZooKeeperServer, session: int) -> list[str]:
    """The paths ``session`` watches, as the server says (``wchc``)."""
    text = zookeeper.four_letter("wchc")
    found, current = [], None
    for line in text.splitlines():
        if line.startswith("0x"):
            current = int(line.strip(), 16)
        elif line.strip() and current == session:
            found.append(line.strip())
    return found
