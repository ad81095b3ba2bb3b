"""Proxy mode for a provider in a Docker container published with -P: the proxy runs in the
app's network namespace and maps through the container's real bindings, whether the app dials
the proxy or keeps its ZooKeeper address under transparent capture."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from docker.models.containers import Container
from kazoo.client import KazooClient

from sidecar import urls
from sidecar.model import Endpoint
from sidecar.proxy import capture
from testbed.engine import DockerEngine
from testbed.networks import published_port
from testbed.polling import wait_until
from testbed.proxy_process import PROJECT_ROOT, ProxyProcess
from testbed.zookeeper import ZooKeeperServer

from .helpers import children, original_name, pong
from .proxy_helpers import Listings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture
def pod(root: str, start_provider: Callable[..., Container]) -> Container:
    """The container that owns the app's network namespace and publishes 20880 with -P (a
    provider of its own on 20999, registered under another root)."""
    owner = start_provider("--root", f"{root}-pod", "--port", "20999")
    owner.reload()
    return owner


@pytest.fixture
def start_proxy(tmp_path: Path, pod: Container) -> Iterator[Callable[..., ProxyProcess]]:
    """Start the proxy in the pod's network namespace, mapping through the pod's bindings."""
    started: list[ProxyProcess] = []

    def start(*args: str) -> ProxyProcess:
        namespace = f"--net=/proc/{pod.attrs['State']['Pid']}/ns/net"
        assert pod.id is not None
        proxy = ProxyProcess(
            tmp_path / f"proxy-{len(started)}.log",
            [*args, "--docker-container", pod.id, "--advertise-host", "127.0.0.1"],
            prefix=["nsenter", namespace],
        ).start()
        started.append(proxy)
        proxy.wait_for_event("proxy_listening")
        return proxy

    try:
        yield start
    finally:
        for proxy in started:
            if proxy.running:
                proxy.kill()


def published_name(app: Container, pod: Container) -> str:
    return urls.parse(original_name(app)).with_endpoint(
        Endpoint("127.0.0.1", published_port(pod, "20880/tcp"))
    )


def test_provider_in_a_container_registers_through_the_proxy(
    engine: DockerEngine,
    zookeeper: ZooKeeperServer,
    registry: KazooClient,
    root: str,
    providers: str,
    pod: Container,
    start_provider: Callable[..., Container],
    start_proxy: Callable[..., ProxyProcess],
) -> None:
    """The app dials the proxy at 127.0.0.1:2181 in its namespace: its registration and its
    Dubbo 3 instance appear with the published port only, a consumer outside reaches it
    there, and stopping the provider unregisters both (the provider's own deletes)."""
    services = f"{root}-services"
    start_proxy("--listen", "127.0.0.1:2181", "--services-root", services,
                "--zookeeper", f"{engine.bridge_gateway()}:{zookeeper.port}")  # fmt: skip
    listings = Listings(registry, providers)
    # Dialling loopback, the provider registers its own address as Dubbo does: the pod's.
    app = start_provider(
        "--application", "in-pod", "--host", pod.attrs["NetworkSettings"]["IPAddress"],
        "--instance-root", services,
        publish_all=False, network_mode=f"container:{pod.id}", connect="127.0.0.1:2181",
    )  # fmt: skip

    name, port = published_name(app, pod), published_port(pod, "20880/tcp")
    listings.wait_for(name)
    assert not any(original_name(app) in seen for seen in listings.all())
    assert pong("127.0.0.1", port).startswith("pong in-pod ")
    # The provider registers its instance after its URL.
    instance_path = f"{services}/in-pod/127.0.0.1:{port}"
    wait_until(lambda: registry.exists(instance_path), 5, message="no instance")
    instance = json.loads(registry.get(instance_path)[0])
    assert (instance["address"], instance["port"], instance["id"]) == (
        "127.0.0.1",
        port,
        f"127.0.0.1:{port}",
    )
    app.stop(timeout=10)
    wait_until(lambda: name not in children(registry, providers), 10, message="not removed")
    assert children(registry, f"{services}/in-pod") == []


def test_transparent_capture_fails_closed(
    engine: DockerEngine,
    zookeeper: ZooKeeperServer,
    registry: KazooClient,
    providers: str,
    pod: Container,
    start_provider: Callable[..., Container],
    start_proxy: Callable[..., ProxyProcess],
) -> None:
    """The app keeps ZooKeeper's real address; the capture redirects it to the proxy, which
    forwards to the server the app dialled. The rules stay once the proxy stops (the app's
    connections are refused, never relayed unrewritten); a proxy started again replaces them
    (no rule twice); `dubbo-sidecar uncapture` removes them."""
    args = ("--listen", "127.0.0.1:15181", "--capture", str(zookeeper.port))
    proxy = start_proxy(*args)
    listings = Listings(registry, providers)
    app = start_provider(
        "--application", "captured", publish_all=False, network_mode=f"container:{pod.id}"
    )

    listings.wait_for(published_name(app, pod))
    assert not any(original_name(app) in seen for seen in listings.all())
    upstreams = {e["upstream"] for e in proxy.events("proxy_connection_opened")}
    assert upstreams == {f"{engine.bridge_gateway()}:{zookeeper.port}"}
    assert proxy.terminate() == 0
    assert _rules(pod).count(f"-j {capture.CHAIN}") == 1  # still there
    assert _refused(pod, f"{engine.bridge_gateway()}:{zookeeper.port}")
    again = start_proxy(*args)
    again.wait_for_event("proxy_connection_opened")  # the app is back, through the proxy
    rules = _rules(pod)
    assert (rules.count(f"-j {capture.CHAIN}"), rules.count("--to-ports 15181")) == (1, 1)
    assert children(registry, providers) == [published_name(app, pod)]
    assert not any(original_name(app) in seen for seen in listings.all())
    assert again.terminate() == 0
    done = subprocess.run(
        [*_in(pod), sys.executable, "-m", "sidecar", "uncapture"],
        capture_output=True, text=True, timeout=60, check=False, cwd=PROJECT_ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert capture.CHAIN not in _rules(pod)


def _in(pod: Container) -> list[str]:
    return ["nsenter", f"--net=/proc/{pod.attrs['State']['Pid']}/ns/net"]


def _rules(pod: Container) -> str:
    """The pod's IPv4 nat rules."""
    return subprocess.run(
        [*_in(pod), "iptables", "-t", "nat", "-S"], capture_output=True, text=True,
        timeout=30, check=True,
    ).stdout  # fmt: skip


def _refused(pod: Container, server: str) -> bool:
    """Whether a connection from the pod's namespace to ``server`` is refused."""
    host, port = server.rsplit(":", 1)
    probe = (
        "import socket, sys\ntry:\n socket.create_connection((sys.argv[1], int(sys.argv[2])), 5)"
        "\nexcept ConnectionRefusedError:\n sys.exit(3)"
    )
    done = subprocess.run([*_in(pod), sys.executable, "-c", probe, host, port],
                          capture_output=True, timeout=30, check=False)  # fmt: skip
    return done.returncode == 3


def test_capture_without_net_admin_exits_2_with_the_reason() -> None:
    """Without CAP_NET_ADMIN the proxy cannot capture: exit code 2 and one line saying why
    (in a network namespace of its own, so that nothing could ever reach the host's rules)."""
    done = subprocess.run(
        ["unshare", "--net", "setpriv", "--bounding-set", "-net_admin", "--", sys.executable,
         "-m", "testbed.proxy_main", "--listen", "127.0.0.1:0", "--capture", "2181"],
        capture_output=True, text=True, timeout=60, check=False, cwd=PROJECT_ROOT,
    )  # fmt: skip
    assert done.returncode == 2
    [line] = [line for line in done.stderr.splitlines() if line.startswith("proxy: ")]
    assert line.startswith("proxy: cannot install the capture rules (needs CAP_NET_ADMIN)")
