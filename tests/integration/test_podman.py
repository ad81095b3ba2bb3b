"""End to end on rootful Podman (netavark) through its Docker-compatible API: ports published
with ``-p`` and ``-P`` are rewritten, a container that stops takes its rewrite with it (events),
labels opt out, and a per-app sidecar in its app's network namespace (``--network
container:<app>``, a pod) serves that app beside the per-host sidecar."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient

from sidecar import urls
from sidecar.model import Endpoint
from sidecar.ownership import read_marker
from sidecar.scope import LEASE_ROOT
from testbed import provider as provider_script
from testbed import sidecar_main
from testbed.polling import free_port, wait_until
from testbed.sidecar_process import SidecarProcess
from testbed.zookeeper import ZooKeeperServer

from .conftest import INTERFACE
from .helpers import SIDECAR_SOURCE, children, pong
from .podman_env import Podman, podman_missing, private_podman

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]
PREFIX = "dubbo-nat-sidecar."


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    """A private rootful Podman serving its Docker-compatible API on a socket of its own."""
    missing = podman_missing()
    if missing:
        pytest.skip(missing)
    with private_podman(tmp_path_factory.mktemp("podman")) as started:
        yield started


@pytest.fixture
def start_podman_provider(
    podman: Podman, zookeeper: ZooKeeperServer, root: str
) -> Iterator[Callable[..., str]]:
    """Run ``testbed/provider.py`` with ``podman run <options>``; returns its container ID
    once it has registered (from the container's address) under this test's root."""
    started: list[str] = []

    def start(*options: str) -> str:
        container = podman.run_python(
            Path(provider_script.__file__),
            ["--zookeeper", f"{podman.gateway()}:{zookeeper.port}", "--root", root,
             "--interface", INTERFACE, "--session-timeout", "4"],
            options=options,
        )  # fmt: skip
        started.append(container)
        podman.wait_for_line(container, "registered ")
        return container

    try:
        yield start
    finally:
        if started:
            podman.cli("rm", "--force", "--ignore", "--time", "0", *started)


@pytest.fixture
def start_podman_sidecar(
    tmp_path: Path, podman: Podman, zookeeper: ZooKeeperServer, root: str
) -> Iterator[Callable[..., SidecarProcess]]:
    """``dubbo-sidecar run --docker-url unix://<Podman's socket>`` on the host, advertising
    127.0.0.1; ready once its first pass is done."""
    started: list[SidecarProcess] = []

    def start(*extra: str) -> SidecarProcess:
        args = [
            "--zookeeper", zookeeper.connect_string, "--root", root, "--docker-url", podman.url,
            "--advertise-host", "127.0.0.1", "--session-timeout", "10", "--log-level", "debug",
            "--listen", "127.0.0.1:0", "--state-file", str(tmp_path / f"state-{len(started)}"),
            *extra,
        ]  # fmt: skip
        sidecar = SidecarProcess(tmp_path / f"sidecar-{len(started)}.log", args).start()
        started.append(sidecar)
        sidecar.wait_for_event("resync_done")
        return sidecar

    try:
        yield start
    finally:
        for sidecar in started:
            if sidecar.running:
                sidecar.kill()


def original(podman: Podman, container: str) -> str:
    """The node name the provider registered."""
    return podman.wait_for_line(container, "registered ").rsplit("/", 1)[1]


def host_port(podman: Podman, container: str) -> int:
    """The host port Podman published the container's 20880 on."""
    bindings = podman.inspect(container)["NetworkSettings"]["Ports"]["20880/tcp"]
    return int(bindings[0]["HostPort"])


def rewritten(podman: Podman, container: str, port: int | None = None) -> str:
    """The registration as the sidecar should rewrite it: 127.0.0.1 and ``port``, by
    default the port published."""
    endpoint = Endpoint("127.0.0.1", port or host_port(podman, container))
    return urls.parse(original(podman, container)).with_endpoint(endpoint)


def container_address(podman: Podman, container: str) -> str:
    networks = podman.inspect(container)["NetworkSettings"]["Networks"]
    return str(next(iter(networks.values()))["IPAddress"])


def test_podman_published_ports_are_rewritten_to_the_host(
    podman: Podman,
    providers: str,
    registry: KazooClient,
    start_podman_provider: Callable[..., str],
    start_podman_sidecar: Callable[..., SidecarProcess],
) -> None:
    """Providers published with ``-p <host port>:20880`` and with ``-P`` are registered at
    127.0.0.1:<published port> within seconds, owned by the sidecar's session (the proof
    that each provider's session connects from its container held); the published port
    answers; the marker names the Podman container and a stable engine identity."""
    fixed_port = free_port()
    by_p = start_podman_provider("-p", f"{fixed_port}:20880")
    by_all = start_podman_provider("-P")
    sidecar = start_podman_sidecar()

    wanted = sorted([rewritten(podman, by_p), rewritten(podman, by_all)])
    wait_until(lambda: children(registry, providers) == wanted, 10, message="not rewritten")
    assert host_port(podman, by_p) == fixed_port
    for container in (by_p, by_all):
        assert pong("127.0.0.1", host_port(podman, container)).startswith("pong ")
        data, stat = registry.get(f"{providers}/{rewritten(podman, container)}")
        marker = read_marker(data)
        assert marker is not None
        assert marker.container == container
        assert marker.container_endpoint == Endpoint(container_address(podman, container), 20880)
        assert marker.engine.startswith("podman-")
        assert stat.ephemeralOwner == sidecar.session
    assert marker is not None
    assert children(registry, f"{LEASE_ROOT}/{marker.engine}") == ["host"]


def test_a_container_that_stops_takes_its_rewrite_with_it_within_a_second(
    podman: Podman,
    providers: str,
    registry: KazooClient,
    start_podman_provider: Callable[..., str],
    start_podman_sidecar: Callable[..., SidecarProcess],
) -> None:
    """Podman's events reach the sidecar: stopping, killing, removing or pausing a provider
    container removes its rewritten registration within 1 s (the resync is a minute away)."""
    commands = {"stop": ("stop", "--time", "5"), "kill": ("kill",),
                "rm": ("rm", "--force", "--time", "0"), "pause": ("pause",)}  # fmt: skip
    containers = {how: start_podman_provider("-P") for how in commands}
    sidecar = start_podman_sidecar()
    wait_until(lambda: len(children(registry, providers)) == len(commands), 10,
               message="not rewritten")  # fmt: skip

    for how, command in commands.items():
        container = containers[how]
        left = sorted(set(children(registry, providers)) - {rewritten(podman, container)})
        podman.cli(*command, container)
        gone_at = time.monotonic()
        wait_until(lambda: children(registry, providers) == left,  # noqa: B023 (waited here)
                   5, message=f"{how}: not removed")  # fmt: skip
        assert time.monotonic() - gone_at < 1.0, how
    names = {podman.inspect(c)["Name"].lstrip("/"): how for how, c in containers.items()
             if how != "rm"}  # fmt: skip
    for line in sidecar.logged("remove", count=len(commands)):
        how = names.get(line["container"], "rm")
        assert ("is paused" if how == "pause" else "no longer running") in line["reason"], how


def test_connecting_a_container_to_a_network_is_noticed_at_once(
    podman: Podman,
    providers: str,
    registry: KazooClient,
    start_podman_provider: Callable[..., str],
    start_podman_sidecar: Callable[..., SidecarProcess],
) -> None:
    """``podman network connect`` and ``disconnect`` (whose events name the container as
    the actor, where Docker names the network) make the sidecar read that container again
    within a second, as Docker's do."""
    provider = start_podman_provider("-P")
    sidecar = start_podman_sidecar()
    wait_until(lambda: children(registry, providers) == [rewritten(podman, provider)], 10,
               message="not rewritten")  # fmt: skip
    network = f"testbed-{provider[:8]}"
    podman.cli("network", "create", "--disable-dns", network)
    try:
        for count, action in enumerate(("connect", "disconnect"), start=1):
            podman.cli("network", action, network, provider)
            changed = sidecar.logged("container_changed", count=count, timeout=1.0)
            assert [line["container"] for line in changed] == [provider[:12]] * count, action
    finally:
        podman.cli("network", "rm", "--force", network)


def test_a_label_opts_a_podman_container_out(
    podman: Podman,
    providers: str,
    registry: KazooClient,
    start_podman_provider: Callable[..., str],
    start_podman_sidecar: Callable[..., SidecarProcess],
) -> None:
    """``podman run --label dubbo-nat-sidecar.enable=false`` leaves that provider's
    registration as it is, while a neighbour is rewritten."""
    opted_out = start_podman_provider("-P", "--label", f"{PREFIX}enable=false")
    neighbour = start_podman_provider("-P")
    sidecar = start_podman_sidecar()

    wanted = sorted([original(podman, opted_out), rewritten(podman, neighbour)])
    wait_until(lambda: children(registry, providers) == wanted, 10, message="not as labelled")
    name = podman.inspect(opted_out)["Name"].lstrip("/")
    left = {line["container"]: line["reason"] for line in sidecar.logged("left_alone")}
    assert left[name] == f"opted out by label {PREFIX}enable=false"


def scope_of(podman: Podman, sidecar: str) -> dict[str, Any]:
    """The ``scope_chosen`` log line of a sidecar running in a container."""

    def chosen() -> dict[str, Any] | None:
        for line in podman.logs(sidecar):
            if '"scope_chosen"' in line:
                found: dict[str, Any] = json.loads(line)
                return found
        return None

    try:
        return wait_until(chosen, 30, interval=0.2)
    except TimeoutError:
        raise AssertionError("no scope chosen: " + "\n".join(podman.logs(sidecar)[-20:])) from None


@pytest.mark.parametrize("namespace", ["container", "pod"])
def test_a_per_app_sidecar_in_its_apps_namespace_serves_that_app(
    namespace: str,
    podman: Podman,
    zookeeper: ZooKeeperServer,
    root: str,
    providers: str,
    registry: KazooClient,
    start_podman_provider: Callable[..., str],
    start_podman_sidecar: Callable[..., SidecarProcess],
) -> None:
    """A sidecar container in the app's network namespace (``--network container:<app>``,
    or both in one pod publishing the port, labelled on the pod) with Podman's socket finds
    its app by itself and takes it over from the per-host sidecar, which keeps the other
    app: both sidecars name the same engine, so each sees the other's lease."""
    if namespace == "pod":
        pod = podman.cli("pod", "create", f"--network={podman.network}", "-p", "20880",
                         "--label", f"{PREFIX}port.20880=31000")  # fmt: skip
        app = start_podman_provider(f"--pod={pod}")
        holder = json.loads(podman.cli("pod", "inspect", pod))["InfraContainerID"]
        joined, app_port = [f"--pod={pod}"], 31000
    else:
        app = holder = start_podman_provider("-P")
        joined, app_port = [f"--network=container:{app}"], None
    other = start_podman_provider("-P")
    host = start_podman_sidecar()
    both = sorted([rewritten(podman, app, app_port), rewritten(podman, other)])
    wait_until(lambda: children(registry, providers) == both, 10, message="not rewritten")

    socket_path = str(podman.socket)
    beside = podman.run_python(
        Path(sidecar_main.__file__),
        ["run", "--zookeeper", f"{podman.gateway()}:{zookeeper.port}", "--root", root,
         "--docker-url", podman.url, "--log-format", "json", "--state-file", "",
         "--listen", "", "--session-timeout", "10"],
        options=[*joined, "--env=HOST_IP=127.0.0.1"],
        volumes=[str(SIDECAR_SOURCE), socket_path],
    )  # fmt: skip
    try:
        holder_name = podman.inspect(holder)["Name"].lstrip("/")
        assert scope_of(podman, beside)["scope"] == f"per-app sidecar of {holder_name}"
        app_path = f"{providers}/{rewritten(podman, app, app_port)}"

        def taken_over() -> bool:
            return registry.exists(app_path) and registry.exists(app_path).ephemeralOwner not in (
                0, host.session)  # fmt: skip

        wait_until(taken_over, 15, message="the per-app sidecar did not take its app over")
        assert children(registry, providers) == both
        other_path = f"{providers}/{rewritten(podman, other)}"
        assert registry.get(other_path)[1].ephemeralOwner == host.session
        marker = read_marker(registry.get(app_path)[0])
        assert marker is not None
        leases = set(children(registry, f"{LEASE_ROOT}/{marker.engine}"))
        assert {"host", f"app-{podman.inspect(holder)['Id']}"} <= leases
    finally:
        podman.cli("rm", "--force", "--time", "0", beside)
        if namespace == "pod":
            podman.cli("pod", "rm", "--force", "--time", "0", pod)
