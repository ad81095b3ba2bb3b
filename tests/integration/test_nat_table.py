"""The NAT table as the only source of port mappings, against rules the real programs write:
a Kubernetes node (a network namespace playing the node) whose pod gets its ``hostPort``
from the CNI ``bridge`` + ``portmap`` plugins, called as containerd calls them, through
either iptables back end; and Docker's ``-P`` rules, with no Docker socket. The sidecar
runs with ``--docker-url none --nat-table``; with only ``NET_ADMIN`` where that is enough."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from docker.models.containers import Container
from kazoo.client import KazooClient

from testbed.cni import Network, Pod, PortMapping, free_subnet
from testbed.consumer import call_address
from testbed.dubbo_url import java_url_encode
from testbed.hosts import Host, Hosts
from testbed.polling import free_port, wait_until
from testbed.sidecar_process import SidecarProcess
from testbed.zookeeper import ZooKeeperServer

from .conftest import INTERFACE, PROJECT_ROOT
from .helpers import children

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

# Only NET_ADMIN, as root without the others (a container's root with every capability
# dropped but this one).
NET_ADMIN_ONLY = ("setpriv", "--inh-caps", "-all,+net_admin", "--ambient-caps",
                  "-all,+net_admin", "--bounding-set", "-all,+net_admin", "--")  # fmt: skip
PICKUP = 2.0  # seconds from a rule written (or removed) to the rewrite made (or removed)


class Node:
    """A stand-in Kubernetes node: a network namespace behind the host's bridge, whose pods
    are on a CNI bridge network of their own, published by portmap in the node's NAT table."""

    def __init__(self, host: Host, network: Network, zookeeper: str) -> None:
        self.host = host
        self.network = network
        self.zookeeper = zookeeper  # as the node and its pods reach it

    def sidecar(self, log: Path, root: str, prefix: tuple[str, ...] = ()) -> SidecarProcess:
        argv = [
            *("--zookeeper", self.zookeeper, "--root", root, "--docker-url", "none"),
            *("--nat-table", "--advertise-host", self.host.address, "--listen", ""),
            *("--session-timeout", "10", "--state-file", "", "--log-level", "debug"),
        ]
        return SidecarProcess(log, argv, prefix=Hosts.command(self.host, list(prefix)))

    @contextmanager
    def provider(self, pod: Pod, root: str) -> Iterator[None]:
        """A provider in the pod registering its pod address, until the block ends."""
        argv = [sys.executable, "-m", "testbed.provider", "--zookeeper", self.zookeeper,
                "--root", root, "--interface", INTERFACE, "--session-timeout", "4"]  # fmt: skip
        process = subprocess.Popen(pod.command(argv), cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, text=True)  # fmt: skip
        try:
            assert process.stdout is not None
            for line in process.stdout:
                if line.startswith("registered "):
                    break
            yield
        finally:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def node(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Node]:
    """A node with ZooKeeper reachable at the host's bridge address; its CNI network uses
    the iptables back end the test's ``backend`` marker names (nf_tables by default)."""
    backend = getattr(request, "param", "nft")
    with ExitStack() as stack:
        hosts = stack.enter_context(Hosts())
        [host] = hosts.ensure(1)
        server = stack.enter_context(ZooKeeperServer(tmp_path / "zk", bind="0.0.0.0"))
        prefix = ["ip", "netns", "exec", host.netns]
        network = stack.enter_context(Network(free_subnet(), prefix, backend))
        yield Node(host, network, f"{hosts.gateway}:{server.port}")


def _name(address: str, port: int) -> str:
    return java_url_encode(f"dubbo://{address}:{port}/{INTERFACE}")


def _providers(registry: KazooClient, root: str) -> list[str]:
    return children(registry, f"{root}/{INTERFACE}/providers")


def _client(node: Node) -> KazooClient:
    client = KazooClient(hosts=node.zookeeper.replace(node.zookeeper.split(":")[0], "127.0.0.1"))
    client.start(timeout=15)
    return client


def _rewritten_within(
    registry: KazooClient, root: str, wanted: Callable[[list[str]], bool], timeout: float
) -> float:
    started = time.monotonic()
    wait_until(lambda: wanted(_providers(registry, root)), timeout,
               message=f"providers now: {_providers(registry, root)}")  # fmt: skip
    return time.monotonic() - started


def _scenario(node: Node, tmp_path: Path, root: str, prefix: tuple[str, ...] = ()) -> None:
    """A pod registers its address; its hostPort published later is rewritten within 2 s and
    reachable there; the pod deleted (CNI DEL), the rewrite is removed within 2 s."""
    host_port = free_port()
    published = _name(node.host.address, host_port)
    registry = _client(node)
    pod = node.network.pod([PortMapping(host_port, 20880)])
    sidecar = node.sidecar(tmp_path / "sidecar.log", root, prefix)
    try:
        pod.start(publish=False)
        with node.provider(pod, root):
            original = _name(pod.address, 20880)
            assert any(n.startswith(original) for n in _providers(registry, root))
            sidecar.start().wait_for_event("resync_done")
            if prefix:  # the sidecar's own capabilities, as the kernel holds them
                status = Path(f"/proc/{sidecar.pid}/status").read_text()
                assert "CapEff:\t0000000000001000" in status
            assert not any(n.startswith(published) for n in _providers(registry, root))
            pod.publish()
            took = _rewritten_within(
                registry, root, lambda names: any(n.startswith(published) for n in names), 10
            )
            assert took < PICKUP
            [rewrite] = sidecar.logged("rewrite")
            assert rewrite["container"].startswith("nat: CNI-DN-")
            assert rewrite["container"].endswith(f"for container {pod.container_id[:12]}")
            assert call_address(node.host.address, host_port).ok
            pod.close()  # the runtime's teardown: CNI DEL of portmap and bridge
            took = _rewritten_within(
                registry, root, lambda names: not any(n.startswith(published) for n in names), 10
            )
            assert took < PICKUP
    finally:
        pod.close()
        if sidecar.running:
            sidecar.kill()
        registry.stop()
        registry.close()


def test_a_pods_host_port_is_rewritten_and_removed_with_the_pod(
    node: Node, tmp_path: Path, root: str
) -> None:
    """Kubernetes on containerd, no Docker: a pod's hostPort (CNI portmap, nf_tables) is
    what its provider's registration is rewritten to, within 2 s of the rule; `plan`'s and
    the log's decision names the rule's chain and the pod; CNI DEL removes the rewrite."""
    _scenario(node, tmp_path, root)


def test_plan_names_the_rule_behind_each_mapping(node: Node, root: str) -> None:
    """`plan` on the node (one read of the NAT table, nothing written) says the pod's
    registration would be rewritten to its hostPort, by the rule's chain for the pod."""
    host_port = free_port()
    with node.network.pod([PortMapping(host_port, 20880)]) as pod, node.provider(pod, root):
        argv = [
            sys.executable, "-m", "sidecar", "plan", "--output", "json",
            *("--zookeeper", node.zookeeper, "--root", root, "--docker-url", "none"),
            *("--nat-table", "--advertise-host", node.host.address),
        ]  # fmt: skip
        done = subprocess.run(Hosts.command(node.host, argv), capture_output=True, text=True,
                              timeout=60, check=False, cwd=PROJECT_ROOT)  # fmt: skip
        assert done.returncode == 0, done.stderr
        [decision] = json.loads(done.stdout)["decisions"]
    assert decision["action"] == "rewrite"
    assert decision["advertised"] == {"host": node.host.address, "port": host_port}
    assert decision["container"] == {
        "id": f"nat-{pod.container_id}",
        "name": f"nat: {decision['container']['name'].split()[1]} for container "
        f"{pod.container_id[:12]}",
    }
    assert decision["container"]["name"].startswith("nat: CNI-DN-")


def test_plan_without_net_admin_says_the_nat_table_cannot_be_read(node: Node, root: str) -> None:
    """`plan` with no capability at all fails, naming the NAT table and why, rather than
    showing a plan made without its mappings."""
    argv = [
        "setpriv", "--inh-caps", "-all", "--ambient-caps", "-all", "--bounding-set", "-all", "--",
        sys.executable, "-m", "sidecar", "plan", "--log-format", "json",
        *("--zookeeper", node.zookeeper, "--root", root, "--docker-url", "none"),
        *("--nat-table", "--advertise-host", node.host.address),
    ]  # fmt: skip
    done = subprocess.run(Hosts.command(node.host, argv), capture_output=True, text=True,
                          timeout=60, check=False, cwd=PROJECT_ROOT)  # fmt: skip
    assert done.returncode == 1
    [failed] = [json.loads(line) for line in done.stderr.splitlines() if "command_failed" in line]
    assert failed["problem"].startswith("NAT table not readable: ")


@pytest.mark.parametrize("node", ["legacy"], indirect=True)
def test_the_legacy_back_end_is_followed_too(node: Node, tmp_path: Path, root: str) -> None:
    """A node whose portmap writes through iptables-legacy (which tells no one of changes)
    is followed as fast: its tables' digest is compared once a second."""
    _scenario(node, tmp_path, root)


def test_net_admin_alone_is_enough(node: Node, tmp_path: Path, root: str) -> None:
    """With every capability dropped but NET_ADMIN, and no Docker socket, the NAT source
    still reads the rules and the sidecar rewrites (nf_tables back end)."""
    _scenario(node, tmp_path, root, NET_ADMIN_ONLY)


def test_docker_published_ports_without_the_docker_socket(
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
    providers: str,
    registry: KazooClient,
) -> None:
    """`docker run -P`: Docker's own DNAT rules are enough to rewrite its provider, with no
    Docker socket given to the sidecar."""
    provider = start_provider()
    provider.reload()
    address = provider.attrs["NetworkSettings"]["IPAddress"]
    host_port = int(provider.attrs["NetworkSettings"]["Ports"]["20880/tcp"][0]["HostPort"])
    sidecar = start_sidecar("--nat-table", docker_url="none")
    published = _name("127.0.0.1", host_port)
    wait_until(lambda: any(n.startswith(published) for n in children(registry, providers)), 10,
               message="never rewritten")  # fmt: skip
    [rewrite] = [e for e in sidecar.logged("rewrite") if e["original"] == f"{address}:20880"]
    assert rewrite["container"] == f"nat: DOCKER for {address}"


@contextmanager
def _podman_provider(node: Node, work: Path, root: str, host_port: int) -> Iterator[str]:
    """A provider in a rootful Podman container on the node, published with
    ``-p HOST_PORT:20880`` (netavark writes the rules in the node's NAT table); yields the
    container's id. Podman keeps its state under ``work``, and everything goes at the end."""
    # Podman refuses a run root longer than 50 characters: a short one of its own.
    runroot = Path(tempfile.mkdtemp(prefix="natpm-", dir="/run"))
    podman = ["nsenter", f"--net=/var/run/netns/{node.host.netns}", "podman",
              "--root", str(work / "root"), "--runroot", str(runroot),
              "--cgroup-manager", "cgroupfs", "--events-backend", "file",
              "--storage-driver", "vfs"]  # fmt: skip
    try:
        work.mkdir(parents=True, exist_ok=True)
        empty = work / "rootfs.tar"
        subprocess.run(["tar", "-cf", str(empty), "-T", "/dev/null"], check=True, timeout=30)
        imported = subprocess.run(
            [*podman, "import", str(empty), "localhost/nat-empty:1"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert imported.returncode == 0, imported.stderr
        mounts = [f"{p}:{p}:ro" for p in ("/usr", "/lib", "/lib64", "/bin", "/etc", "/root",
                                            str(PROJECT_ROOT))]  # fmt: skip
        argv = [
            *podman, "run", "-d", "--ulimit", "nofile=20000", "--ulimit", "nproc=4096",
            *(f"--volume={m}" for m in mounts), "-w", str(PROJECT_ROOT),
            "-p", f"{host_port}:20880", "localhost/nat-empty:1",
            sys.executable, "-m", "testbed.provider", "--zookeeper", node.zookeeper,
            "--root", root, "--interface", INTERFACE, "--session-timeout", "4",
        ]  # fmt: skip
        started = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        assert started.returncode == 0, started.stderr
        yield started.stdout.strip()
    finally:
        subprocess.run([*podman, "rm", "-f", "-t", "0", "--all"], capture_output=True,
                       timeout=120, check=False)  # fmt: skip
        shutil.rmtree(runroot, ignore_errors=True)


def test_podman_published_ports_through_netavark(node: Node, tmp_path: Path, root: str) -> None:
    """Rootful Podman `-p` (netavark's rules): the provider in the container is rewritten
    to the published port, and the decision names netavark's chain and the container."""
    host_port = free_port()
    published = _name(node.host.address, host_port)
    registry = _client(node)
    sidecar = node.sidecar(tmp_path / "sidecar.log", root)
    try:
        with _podman_provider(node, tmp_path / "podman", root, host_port) as container:
            sidecar.start()
            _rewritten_within(
                registry, root, lambda names: any(n.startswith(published) for n in names), 60
            )
            [rewrite] = sidecar.logged("rewrite")
            assert rewrite["container"].startswith("nat: NETAVARK-DN-")
            assert rewrite["container"].endswith(f"for container {container[:12]}")
            assert call_address(node.host.address, host_port).ok
    finally:
        if sidecar.running:
            sidecar.kill()
        registry.stop()
        registry.close()
