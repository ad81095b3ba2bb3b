"""What Docker made of a test's containers: their networks, addresses, published ports and
the docker-proxy processes forwarding them."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import docker
from docker.models.containers import Container


def network_gateway(client: docker.DockerClient, network: str) -> str:
    """The IPv4 gateway of ``network``; the subnet's first address if the IPAM config omits it."""
    for config in _ipam_configs(client, network):
        gateway = config.get("Gateway")
        if gateway and ipaddress.ip_address(gateway).version == 4:
            return str(gateway)
    subnet = ipaddress.ip_network(network_subnet(client, network))
    return str(next(subnet.hosts()))


def network_subnet(client: docker.DockerClient, network: str) -> str:
    """The IPv4 subnet of ``network`` in CIDR notation."""
    for config in _ipam_configs(client, network):
        subnet = config.get("Subnet")
        if subnet and ipaddress.ip_network(subnet).version == 4:
            return str(subnet)
    raise LookupError(f"Docker network {network!r} has no IPv4 subnet")


def container_ip(container: Container, network: str | None = None) -> str:
    """The container's IPv4 address on ``network`` (default: its only or first network)."""
    container.reload()
    networks: dict[str, dict[str, str]] = container.attrs["NetworkSettings"]["Networks"]
    if network is not None:
        address = networks[network]["IPAddress"]
    else:
        address = next((n["IPAddress"] for n in networks.values() if n.get("IPAddress")), "")
    if not address:
        raise LookupError(f"container {container.name} has no IPv4 address on {network or 'any'}")
    return address


def published_port(container: Container, port: str = "20880/tcp", *, ipv6: bool = False) -> int:
    """The host port Docker published ``port`` on, for the IPv4 (or IPv6) binding.

    Since Engine 20.10 the IPv4 and IPv6 bindings of one port may differ, hence ``ipv6``.
    """
    container.reload()
    bindings: list[dict[str, str]] | None = container.attrs["NetworkSettings"]["Ports"].get(port)
    for binding in bindings or []:
        if (":" in binding.get("HostIp", "")) == ipv6:
            return int(binding["HostPort"])
    raise LookupError(f"container {container.name} does not publish {port}")


def userland_proxy_pids(host_port: int) -> list[int]:
    """The pids of ``docker-proxy`` processes forwarding ``host_port`` (empty if DNAT does it).

    With the userland proxy, host connections to ``127.0.0.1:<published port>`` come from
    ``docker-proxy``'s own sockets; without it they are DNATed in ``nat OUTPUT`` and leave the
    test process addressed to the container, which owner-matching firewall rules then see.
    """
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            argv
            and argv[0].endswith(b"docker-proxy")
            and _flag_value(argv, b"-host-port") == str(host_port).encode()
        ):
            pids.append(int(entry.name))
    return pids


def _flag_value(argv: list[bytes], flag: bytes) -> bytes | None:
    for index, arg in enumerate(argv[:-1]):
        if arg == flag:
            return argv[index + 1]
    return None


def _ipam_configs(client: docker.DockerClient, network: str) -> list[dict[str, str]]:
    attrs = client.networks.get(network).attrs
    configs: list[dict[str, str]] | None = (attrs.get("IPAM") or {}).get("Config")
    return configs or []
