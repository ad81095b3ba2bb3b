"""The wider registry on real servers: Dubbo 3 application-level instances, several protocols
per process, IPv6, several networks and namespace sharing, ACLs, and the static mapping for
hosts without a Docker socket."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import docker.errors
import pytest
from docker.models.containers import Container
from docker.models.networks import Network
from kazoo.client import KazooClient
from kazoo.security import make_digest_acl

from sidecar import urls
from sidecar.model import Endpoint
from sidecar.sources.host import interface_addresses
from testbed.consumer import run_as_group
from testbed.dubbo_url import java_url_encode
from testbed.engine import LABELS, RUN_LABEL, DockerEngine
from testbed.firewall import unreachable_for_group
from testbed.images import container_output, wait_for_line
from testbed.networks import container_ip, published_port
from testbed.polling import wait_until
from testbed.sidecar_process import SidecarProcess
from testbed.zookeeper import ZooKeeperServer

from .conftest import INTERFACE
from .helpers import children, one_shot, pong, registered, rewritten_name, sidecar_beside

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


# -- Dubbo 3 application-level instances, several protocols -----------------------------------


def test_application_instance_and_both_protocols_are_mapped_port_by_port(
    root: str,
    providers: str,
    registry: KazooClient,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """One process exports dubbo (published) and tri (published on its own host port) and
    registers an application-level instance: each URL is mapped by its own port's binding;
    the instance's address fields and endpoint ports are rewritten in place (its node keeps
    its name and owner), every other field kept in order; the Dubbo 3.1+ port warning is
    logged."""
    services = f"{root}-services"
    provider = start_provider(
        "--extra-protocol", "tri:50051", "--instance-root", services,
        ports={"20880/tcp": None, "50051/tcp": None},
    )  # fmt: skip
    dubbo_port = published_port(provider, "20880/tcp")
    tri_port = published_port(provider, "50051/tcp")
    ip = container_ip(provider)
    app = f"{services}/demo-provider"
    # The provider registers its instance after its URLs.
    wait_until(lambda: registry.exists(f"{app}/{ip}:20880"), 5, message="no instance")
    original_instance, original_stat = registry.get(f"{app}/{ip}:20880")
    sidecar = start_sidecar("--services-root", services)

    wanted = sorted(
        urls.parse(path.rsplit("/", 1)[1]).with_endpoint(Endpoint("127.0.0.1", port))
        for path, port in zip(registered(provider)[:2], (dubbo_port, tri_port), strict=True)
    )
    wait_until(lambda: children(registry, providers) == wanted, 5, message="URLs not mapped")
    wait_until(lambda: json.loads(registry.get(f"{app}/{ip}:20880")[0])["port"] == dubbo_port,
               5, message="instance not rewritten")  # fmt: skip

    assert children(registry, app) == [f"{ip}:20880"]
    before = json.loads(original_instance)
    data, stat = registry.get(f"{app}/{ip}:20880")
    assert (stat.czxid, stat.ephemeralOwner) == (original_stat.czxid, original_stat.ephemeralOwner)
    after = json.loads(data)
    assert list(after) == list(before)
    assert (after["id"], after["address"], after["port"]) == (
        f"127.0.0.1:{dubbo_port}",
        "127.0.0.1",
        dubbo_port,
    )
    assert after["payload"]["id"] == f"127.0.0.1:{dubbo_port}"
    metadata, old = after["payload"]["metadata"], before["payload"]["metadata"]
    assert json.loads(metadata["dubbo.endpoints"]) == [
        {"port": dubbo_port, "protocol": "dubbo"},
        {"port": tri_port, "protocol": "tri"},
    ]
    assert json.loads(metadata["dubbo.metadata-service.url-params"])["port"] == str(dubbo_port)
    assert metadata["dubbo.metadata.revision"] == old["dubbo.metadata.revision"]
    assert after["registrationTimeUTC"] == before["registrationTimeUTC"]
    sidecar.logged("rewrite", count=2)  # the two URLs
    [instance_line] = sidecar.logged("rewrite-in-place")
    assert instance_line["interface"] == "demo-provider"
    assert "Dubbo 3.1+ consumers may take the port" in instance_line["reason"]
    assert pong("127.0.0.1", tri_port) == "pong demo-provider tri 50051"


def test_unpublished_second_protocol_is_left_and_reported(
    providers: str,
    registry: KazooClient,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """A protocol whose port is not published keeps its registration, with the reason."""
    provider = start_provider("--extra-protocol", "tri:50051")
    sidecar = start_sidecar()
    dubbo_name, tri_name = (p.rsplit("/", 1)[1] for p in registered(provider)[:2])
    rewritten = urls.parse(dubbo_name).with_endpoint(
        Endpoint("127.0.0.1", published_port(provider, "20880/tcp"))
    )
    wait_until(lambda: children(registry, providers) == sorted([rewritten, tri_name]), 5,
               message="not mapped")  # fmt: skip
    reasons = [e["reason"] for e in sidecar.events("left_alone") if e["level"] == "info"]
    assert reasons == [f"port 50051 of container {provider.name} is not published"]


# -- IPv6 and networks ------------------------------------------------------------------------


@pytest.fixture
def dual_stack_network(engine: DockerEngine, run_id: str) -> Iterator[Network]:
    """A user-defined network with IPv4 and IPv6 subnets of this test's own."""
    network = engine.client.networks.create(
        f"tb-v6-{uuid.uuid4().hex[:6]}",
        driver="bridge",
        enable_ipv6=True,
        ipam=docker.types.IPAMConfig(
            pool_configs=[
                docker.types.IPAMPool(subnet="10.231.0.0/24", gateway="10.231.0.1"),
                docker.types.IPAMPool(subnet="fd00:db8:231::/64", gateway="fd00:db8:231::1"),
            ]
        ),
        labels={**LABELS, RUN_LABEL: run_id},
    )
    try:
        yield network
    finally:
        network.remove()


def two_free_ports() -> tuple[int, int]:
    """Two different host ports, free right now (both held while the second is chosen)."""
    with socket.socket(socket.AF_INET) as first, socket.socket(socket.AF_INET6) as second:
        first.bind(("0.0.0.0", 0))
        second.bind(("::", 0))
        return int(first.getsockname()[1]), int(second.getsockname()[1])


def test_ipv6_registration_is_rewritten_to_an_ipv6_advertised_host(
    tmp_path: Path,
    engine: DockerEngine,
    dual_stack_network: Network,
    root: str,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """A provider on a user-defined dual-stack network registers its IPv6 address
    (bracketed in the URL), its port published on different host ports for IPv4 and IPv6;
    with ::1 advertised it becomes [::1]:<the IPv6 binding's port>, which a consumer that
    cannot reach the container networks calls successfully."""
    ipv4_port, ipv6_port = two_free_ports()
    with ZooKeeperServer(tmp_path / "zk6", bind="::") as server:
        provider = start_provider(
            "--listen", "::", connect=f"[fd00:db8:231::1]:{server.port}",
            network=dual_stack_network.name, publish_all=False,
            ports={"20880/tcp": [("0.0.0.0", ipv4_port), ("::", ipv6_port)]},
        )  # fmt: skip
        ipv6 = provider.attrs["NetworkSettings"]["Networks"][dual_stack_network.name][
            "GlobalIPv6Address"
        ]
        [path] = registered(provider)
        assert f"%5B{ipv6.replace(':', '%3A')}%5D" in path
        start_sidecar("--advertise-host", "::1", connect=server.connect_string)
        port = published_port(provider, "20880/tcp", ipv6=True)
        assert (published_port(provider, "20880/tcp"), port) == (ipv4_port, ipv6_port)
        rewritten = urls.parse(path.rsplit("/", 1)[1]).with_endpoint(Endpoint("::1", port))
        client = KazooClient(hosts=server.connect_string)
        client.start(timeout=15)
        try:
            providers = f"{root}/{INTERFACE}/providers"
            wait_until(lambda: children(client, providers) == [rewritten], 5,
                       message="not rewritten")  # fmt: skip
        finally:
            client.stop()
            client.close()
        with unreachable_for_group(["10.231.0.0/24", "fd00:db8:231::/64"]) as gid:
            code, [call] = run_as_group(gid, ["--zookeeper", server.connect_string, "--root", root])
        assert code == 0, call
        assert call["address"] == f"[::1]:{port}"


def test_networks_namespace_sharing_and_host_networking(
    engine: DockerEngine,
    dual_stack_network: Network,
    zookeeper: ZooKeeperServer,
    providers: str,
    registry: KazooClient,
    run_id: str,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """A container on two networks registering its second network's address, a provider
    sharing a pod container's network namespace (container:<id>), and a provider on the
    host network: the first two are rewritten to their published ports, the third is left
    alone with the reason."""
    two_networks = start_provider("--application", "two-networks", wait=False)
    dual_stack_network.connect(two_networks)
    second_ip = container_ip(two_networks, dual_stack_network.name)
    wait_for_line(two_networks, "registered ")
    registry.create(
        f"{providers}/{java_url_encode(f'dubbo://{second_ip}:20880/{INTERFACE}?application=second-net')}",
        ephemeral=True,
    )  # fmt: skip
    pause = start_provider("--application", "pod", "--port", "20999", wait=True)
    member = start_provider(
        "--application", "member", "--port", "20880", publish_all=False,
        network_mode=f"container:{pause.id}",
    )  # fmt: skip
    host_networked = start_provider(
        "--application", "host-net", "--port", "0",
        publish_all=False, network_mode="host", connect=f"127.0.0.1:{zookeeper.port}",
    )  # fmt: skip
    sidecar = start_sidecar()

    def endpoint_of(name: str) -> Endpoint:
        return urls.parse(name).endpoint

    def settled() -> bool:
        present = [endpoint_of(n) for n in children(registry, providers)]
        return (
            Endpoint("127.0.0.1", published_port(two_networks, "20880/tcp")) in present
            and Endpoint("127.0.0.1", published_port(pause, "20880/tcp")) in present
        )

    wait_until(settled, 5, message="not rewritten")
    assert pong("127.0.0.1", published_port(pause, "20880/tcp")).startswith("pong member ")
    [host_path] = registered(host_networked)
    assert host_path.rsplit("/", 1)[1] in children(registry, providers)
    reasons = {e["reason"] for e in sidecar.events("left_alone") if e["level"] == "info"}
    assert (
        "registered with an address of this host (host networking or DUBBO_IP_TO_REGISTRY): "
        "nothing to rewrite" in reasons
    )
    assert member.attrs["HostConfig"]["NetworkMode"] == f"container:{pause.id}"
    assert container_output(member)


# -- ACLs -------------------------------------------------------------------------------------


def test_digest_protected_registry(
    zookeeper: ZooKeeperServer,
    engine: DockerEngine,
    root: str,
    providers: str,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """Providers registering with credentials (CREATOR_ALL): without credentials the
    sidecar cannot read and says so; with them it rewrites, the new node carries the same
    digest ACL, and the password appears in no output, `plan`'s included. A node under a
    path another user owns (readable, not writable) is reported and left untouched."""
    provider = start_provider("--auth", "shop:s3cret-pw")
    blind = start_sidecar()
    blind.wait_for_event("path_not_readable")

    owner = KazooClient(hosts=zookeeper.connect_string, auth_data=[("digest", "shop:s3cret-pw")])
    owner.start(timeout=15)
    other = KazooClient(hosts=zookeeper.connect_string, auth_data=[("digest", "other:pw")])
    other.start(timeout=15)
    try:
        guarded = f"{root}/com.example.Guarded/providers"
        both = [
            make_digest_acl("shop", "s3cret-pw", all=True),
            make_digest_acl("other", "pw", all=True),
        ]
        read_only = [make_digest_acl("other", "pw", all=True),
                     make_digest_acl("shop", "s3cret-pw", read=True)]  # fmt: skip
        owner.create(guarded.rpartition("/")[0], acl=both)
        other.create(guarded, acl=read_only)
        local = java_url_encode(f"dubbo://{container_ip(provider)}:20880/com.example.Guarded?a=1")
        other.create(f"{guarded}/{local}", b"", acl=read_only, ephemeral=True)
        guarded_before = other.get(f"{guarded}/{local}")[1]
        blind.kill()

        sidecar = start_sidecar("--zookeeper-auth", "shop:s3cret-pw")
        rewritten = urls.parse(registered(provider)[0].rsplit("/", 1)[1]).with_endpoint(
            Endpoint("127.0.0.1", published_port(provider, "20880/tcp"))
        )
        wait_until(lambda: children(owner, providers) == [rewritten], 5, message="no rewrite")
        acl, _ = owner.get_acls(f"{providers}/{rewritten}")
        assert [(a.id.scheme, a.id.id.split(":")[0], a.perms) for a in acl] == [
            ("digest", "shop", 31)
        ]
        sidecar.wait_for_event("write_denied")
        assert other.get(f"{guarded}/{local}")[1] == guarded_before
        assert "s3cret-pw" not in sidecar.log_path.read_text()

        blind_plan = one_shot("plan", zookeeper.connect_string, root, engine.url)
        planned = one_shot("plan", zookeeper.connect_string, root, engine.url,
                           "--zookeeper-auth", "shop:s3cret-pw")  # fmt: skip
        assert f"not authorised to read, left alone: {root}\n" in blind_plan.stdout
        assert planned.returncode == 0, planned.stderr
        assert "not authorised" not in planned.stdout
        assert "s3cret-pw" not in planned.stdout + planned.stderr
    finally:
        owner.stop()
        owner.close()
        other.stop()
        other.close()


# -- No Docker socket: the static mapping, the sidecar in the app's network namespace --------


def test_static_mapping_in_the_apps_namespace_without_docker(
    engine: DockerEngine,
    zookeeper: ZooKeeperServer,
    root: str,
    providers: str,
    registry: KazooClient,
    run_id: str,
    start_provider: Callable[..., Container],
    tmp_path: Path,
) -> None:
    """The Kubernetes pod pattern: the sidecar runs in the provider's network namespace
    (container:<id>) with no Docker socket, HOST_IP from the environment and a static
    mapping file; it rewrites the registration, and follows edits of the file without a
    restart: a changed port, then a label giving an external port (a NAT in front)."""
    provider = start_provider()
    port = published_port(provider, "20880/tcp")
    mapping = tmp_path / "mapping" / "ports.toml"
    mapping.parent.mkdir()
    mapping.write_text(f"[ports]\n20880 = {port}\n")
    sidecar = sidecar_beside(
        engine, provider,
        ["--zookeeper", f"{engine.bridge_gateway()}:{zookeeper.port}", "--root", root,
         "--docker-url", "none", "--static-file", str(mapping), "--log-format", "json",
         "--state-file", "/tmp/state.json"],
        run_id, volumes={str(mapping.parent): str(mapping.parent)},
    )  # fmt: skip
    try:
        original = registered(provider)[0].rsplit("/", 1)[1]
        at = urls.parse(original).with_endpoint
        try:
            wait_until(lambda: children(registry, providers) == [at(Endpoint("127.0.0.1", port))],
                       10, message="not rewritten")  # fmt: skip
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; its log:\n{container_output(sidecar)[-2000:]}") from None
        mapping.write_text(f"[ports]\n20880 = {port + 1}\n")
        wait_until(lambda: children(registry, providers) == [at(Endpoint("127.0.0.1", port + 1))],
                   10, message="the changed mapping was not picked up")  # fmt: skip
        mapping.write_text(
            f'[ports]\n20880 = {port + 1}\n[labels]\n"dubbo-nat-sidecar.port.20880" = "40443"\n'
        )
        wait_until(lambda: children(registry, providers) == [at(Endpoint("127.0.0.1", 40443))],
                   10, message="the label in the changed file was not followed")  # fmt: skip
    finally:
        sidecar.remove(force=True)


def test_docker_and_a_static_mapping_from_the_environment_together(
    providers: str,
    registry: KazooClient,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """A per-host sidecar reading Docker and given a static mapping in its environment
    (DUBBO_SIDECAR_STATIC_PORTS): the container's registration is mapped by its Docker
    binding, a process of the host's own network namespace by the static mapping."""
    provider = start_provider()
    own = min(a for a in interface_addresses() if "." in a and not a.startswith("127."))
    host_process = java_url_encode(
        f"dubbo://{own}:20990/{INTERFACE}?application=on-the-host&side=provider"
    )
    registry.create(f"{providers}/{host_process}", b"", ephemeral=True)

    start_sidecar(env={"DUBBO_SIDECAR_STATIC_PORTS": "20990:30990"})
    expected = sorted([
        rewritten_name(provider),
        urls.parse(host_process).with_endpoint(Endpoint("127.0.0.1", 30990)),
    ])  # fmt: skip
    wait_until(lambda: children(registry, providers) == expected, 5, message="not both mapped")
