"""Safety on a real ZooKeeper and Docker Engine: Docker going away, other hosts' providers,
mirror mode, and providers that stop serving while their container keeps running."""

from __future__ import annotations

import json
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from docker.models.containers import Container
from kazoo.client import KazooClient

from sidecar import urls
from sidecar.model import Endpoint
from testbed.consumer import ProvidersWatch, run_as_group
from testbed.engine import LABELS, RUN_LABEL, DockerEngine, private_engine
from testbed.firewall import unreachable_for_group
from testbed.images import wait_for_line
from testbed.networks import container_ip, network_gateway, published_port
from testbed.polling import wait_until
from testbed.sessions import client_from
from testbed.sidecar_process import SidecarProcess
from testbed.zookeeper import ZooKeeperServer

from .conftest import INTERFACE
from .helpers import children, get, metric, one_shot, original_name, rewritten_name

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


# -- Docker Engine restart or socket loss -----------------------------------------------------


@pytest.fixture
def own_engine() -> Iterator[DockerEngine]:
    """A Docker Engine of this test's own, which it may stop and start (live-restore on)."""
    # Short: the daemon's socket paths must fit in 108 bytes.
    work = Path("/tmp") / f"eng-{uuid.uuid4().hex[:8]}"
    try:
        with private_engine(work) as engine:
            yield engine
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_docker_outage_changes_nothing_until_docker_is_back(
    own_engine: DockerEngine,
    providers: str,
    registry: KazooClient,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """While the Docker Engine is down the sidecar keeps the rewrites it has, rewrites nothing
    new, and says so in its log and readiness; when the engine is back it reconnects, lists
    again and catches up."""
    provider = start_provider(on=own_engine)
    sidecar = start_sidecar("--resync-seconds", "1", docker_url=own_engine.url)
    rewritten = rewritten_name(provider)
    late = original_name(provider).replace("demo-provider", "late-provider")
    host_port = published_port(provider, "20880/tcp")
    wait_until(lambda: children(registry, providers) == [rewritten], 5, message="not rewritten")

    own_engine.halt()
    sidecar.wait_for_event("docker_lost")
    registry.create(f"{providers}/{late}", b"", ephemeral=True)
    sidecar.wait_for_event("pass_skipped", count=len(sidecar.events("pass_skipped")) + 2)
    assert children(registry, providers) == sorted([rewritten, late])
    assert sidecar.events("docker_stale")
    status, body = get(f"{sidecar.ops_url}/readyz")
    assert (status, json.loads(body)["reasons"]) == (503, ["Docker Engine not reachable"])
    _, text = get(f"{sidecar.ops_url}/metrics")
    assert metric(text, 'dubbo_sidecar_connected{system="docker"}') == 0

    own_engine.start_again()
    late_rewritten = urls.parse(late).with_endpoint(Endpoint("127.0.0.1", host_port))
    wait_until(
        lambda: children(registry, providers) == sorted([rewritten, late_rewritten]),
        15,
        message="did not catch up after Docker came back",
    )
    assert sidecar.logged("docker_answering")
    # Readiness is set once the pass that wrote the catch-up has returned.
    wait_until(lambda: get(f"{sidecar.ops_url}/readyz")[0] == 200, 5, message="not ready")


# -- Never rewrite another host's provider ----------------------------------------------------


@pytest.fixture(params=["cons", "admin", "neither"])
def zookeeper_telling(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, ZooKeeperServer]]:
    """A ZooKeeper that tells where sessions connect from by `cons`, by the AdminServer
    only, or not at all."""
    how = str(request.param)
    words = "ruok,srvr,cons,mntr" if how == "cons" else "ruok,srvr,mntr"
    admin_port = 0 if how == "admin" else None
    server = ZooKeeperServer(
        tmp_path / "zk", bind="0.0.0.0", admin_port=admin_port, four_letter_words=words
    )
    with server:
        yield how, server


def test_same_endpoint_from_another_host_is_left_alone(
    zookeeper_telling: tuple[str, ZooKeeperServer],
    engine: DockerEngine,
    root: str,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """A second session, connecting from 127.0.0.2 (another host, as the server sees it),
    registers the same container ip:port. With proof (cons or AdminServer) the local
    registration is rewritten and the foreign one left alone; without proof both are refused
    as ambiguous. Either way the foreign node is untouched and the refusal is reported: in
    the log, in `plan` and in the refused-registrations metric."""
    how, server = zookeeper_telling
    providers = f"{root}/{INTERFACE}/providers"
    provider = start_provider(connect=f"{engine.bridge_gateway()}:{server.port}")
    foreign_name = original_name(provider).replace("demo-provider", "other-host-replica")
    other_host = client_from(server.connect_string, "127.0.0.2")
    admin = ["--zookeeper-admin-port", str(server.admin_port or 0)]
    try:
        other_host.create(f"{providers}/{foreign_name}", b"", ephemeral=True)
        foreign_before = other_host.get(f"{providers}/{foreign_name}")[1]
        sidecar = start_sidecar(*admin, connect=server.connect_string)
        client = other_host
        if how == "neither":
            expected = sorted([original_name(provider), foreign_name])
        else:
            expected = sorted([rewritten_name(provider), foreign_name])
        wait_until(lambda: children(client, providers) == expected, 5, message="unexpected")
        assert client.get(f"{providers}/{foreign_name}")[1] == foreign_before
        reasons = [e["reason"] for e in sidecar.events("left_alone") if e["level"] == "info"]
        planned = one_shot("plan", server.connect_string, root, engine.url, *admin)
        assert planned.returncode == 0, planned.stderr
        plan_rows = [row for row in planned.stdout.splitlines() if row.startswith("leave")]
        _, text = get(f"{sidecar.ops_url}/metrics")
        if how == "neither":
            assert len(reasons) == 2
            assert all("registered by 2 ZooKeeper sessions" in r for r in reasons)
            assert len([r for r in plan_rows if "registered by 2 ZooKeeper sessions" in r]) == 2
            assert metric(text, "dubbo_sidecar_registrations_refused") == 2
        else:
            [reason] = reasons
            assert reason.endswith(
                "from 127.0.0.2 (as server 127.0.0.1 sees it), not from this host"
            )
            [row] = plan_rows
            assert row.endswith("not from this host")
            assert metric(text, "dubbo_sidecar_registrations_refused") == 1
    finally:
        other_host.stop()
        other_host.close()


@pytest.fixture
def other_network(engine: DockerEngine, run_id: str) -> Iterator[str]:
    """A user-defined network of this test's own; its name."""
    network = engine.client.networks.create(
        f"tb-other-{uuid.uuid4().hex[:6]}", driver="bridge", labels={**LABELS, RUN_LABEL: run_id}
    )
    try:
        yield str(network.name)
    finally:
        network.remove()


def test_a_registration_of_another_containers_address_is_left_alone(
    engine: DockerEngine,
    zookeeper: ZooKeeperServer,
    root: str,
    providers: str,
    registry: KazooClient,
    other_network: str,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """Container B, on another network of this engine, registers container A's address: B's
    session connects from B's address, which proves B's registrations only. A's own
    registration is rewritten; B's is left alone with the reason, in the log and in `plan`
    (it was rewritten to A's published port before)."""
    gateway = network_gateway(engine.client, other_network)
    a = start_provider(network=other_network, connect=f"{gateway}:{zookeeper.port}")
    a_ip = container_ip(a, other_network)
    b = start_provider("--host", a_ip, "--application", "impostor")
    impostor = original_name(b)
    assert urls.parse(impostor).endpoint == Endpoint(a_ip, 20880)
    sidecar = start_sidecar()
    expected = sorted([rewritten_name(a), impostor])
    wait_until(lambda: children(registry, providers) == expected, 5, message="unexpected")
    # The node's path is cut in log lines: the left-alone line is told by what it says.
    [left] = [e for e in sidecar.events("left_alone") if e["original"] == f"{a_ip}:20880"]
    assert left["reason"].startswith("registered by another container's session")
    assert f"from {container_ip(b)} " in left["reason"]
    planned = one_shot("plan", zookeeper.connect_string, root, engine.url)
    assert planned.returncode == 0, planned.stderr
    [row] = [r for r in planned.stdout.splitlines() if "registered by another container" in r]
    assert row.startswith("leave")


# -- Mirror mode ------------------------------------------------------------------------------


def test_mirror_mode_leaves_the_original_and_follows_it(
    engine: DockerEngine,
    zookeeper: ZooKeeperServer,
    root: str,
    providers: str,
    registry: KazooClient,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """Mirror mode writes the advertised registration under the mirror root, where an
    external consumer reaches the provider; the original stays as it is. The mirror goes
    within 1 s of its original: QoS offline (the provider deletes its node), the end of the
    registering session, and the provider shutting down."""
    mirror_root = f"{root}-external"
    mirror = f"{mirror_root}/{INTERFACE}/providers"
    provider = start_provider()
    original = original_name(provider)
    before = registry.get(f"{providers}/{original}")
    start_sidecar("--mode", "mirror", "--mirror-root", mirror_root)
    wait_until(lambda: children(registry, mirror) == [rewritten_name(provider)], 5,
               message="not mirrored")  # fmt: skip
    assert registry.get(f"{providers}/{original}") == before

    with unreachable_for_group([engine.bridge_subnet()]) as gid:
        args = ["--zookeeper", zookeeper.connect_string, "--root", mirror_root]
        code, [call] = run_as_group(gid, [*args, "--interface", INTERFACE])
    assert code == 0, call
    assert call["reply"] == f"pong demo-provider {container_ip(provider)}:20880"

    # QoS offline: the provider deletes its own node.
    registry.delete(f"{providers}/{original}")
    gone = time.monotonic()
    wait_until(lambda: children(registry, mirror) == [], 5, message="mirror stayed (offline)")
    assert time.monotonic() - gone < 1.0

    # The session that registered it ends.
    other = KazooClient(hosts=zookeeper.connect_string, timeout=4.0)
    other.start(timeout=15)
    other.create(f"{providers}/{original}", b"", ephemeral=True)
    wait_until(lambda: children(registry, mirror) == [rewritten_name(provider)], 5,
               message="not mirrored again")  # fmt: skip
    other.stop()
    other.close()
    gone = time.monotonic()
    wait_until(lambda: children(registry, mirror) == [], 5, message="mirror stayed (session)")
    assert time.monotonic() - gone < 1.0

    # Shutdown: the provider unregisters and its container stops.
    second = start_provider()
    wait_until(lambda: children(registry, mirror) == [rewritten_name(second)], 5,
               message="second provider not mirrored")  # fmt: skip
    second.stop(timeout=10)
    gone = time.monotonic()
    wait_until(lambda: children(registry, mirror) == [], 5, message="mirror stayed (shutdown)")
    assert time.monotonic() - gone < 1.0


# -- Replace mode limits: health and probes ---------------------------------------------------


@pytest.mark.parametrize("signal_by", ["healthcheck", "probe"])
def test_provider_that_stops_serving_is_removed_and_restored(
    signal_by: str,
    providers: str,
    registry: KazooClient,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """A provider that stops listening while its container runs (so nothing changes in
    ZooKeeper): its rewrite is removed once the container turns unhealthy, or once the
    sidecar's TCP probes fail; when it listens again the rewrite comes back."""
    healthcheck = None
    if signal_by == "healthcheck":
        probe_port = "import socket; socket.create_connection(('127.0.0.1', 20880), 1)"
        healthcheck = {
            "test": ["CMD", sys.executable, "-c", probe_port],
            "interval": 300_000_000,
            "timeout": 1_000_000_000,
            "retries": 1,
        }
    provider = start_provider(healthcheck=healthcheck)
    probe = ["--probe-seconds", "0" if signal_by == "healthcheck" else "0.3"]
    sidecar = start_sidecar(*probe)
    rewritten = rewritten_name(provider)
    wait_until(lambda: children(registry, providers) == [rewritten], 10, message="not rewritten")
    watch = ProvidersWatch(registry, providers)

    provider.kill(signal=signal.SIGUSR1)
    wait_for_line(provider, "not listening")
    wait_until(lambda: children(registry, providers) == [], 10, message="not removed")
    removal = sidecar.logged("remove")[0]
    expected = "is unhealthy" if signal_by == "healthcheck" else "probes failed"
    assert expected in removal["reason"]

    provider.kill(signal=signal.SIGUSR2)
    wait_until(lambda: children(registry, providers) == [rewritten], 10, message="not restored")
    assert sidecar.logged("restore")
    # The watch's notification may trail a direct read: wait for the consumer to be shown it.
    wait_until(lambda: watch.lists()[-1] == [rewritten], 5, message="consumer not shown it")
