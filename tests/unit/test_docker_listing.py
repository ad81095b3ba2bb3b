"""Reading a container from Docker's inspect body: every network's address, TCP bindings."""

from __future__ import annotations

from typing import Any

from sidecar.model import PublishedPort
from sidecar.sources.docker import to_container

# GET /containers/{id}/json from Engine 20.10 (trimmed): two networks, port 20880 published on
# IPv4 and IPv6 with different host ports, 22222 exposed but not published, a UDP port.
INSPECTED: dict[str, Any] = {
    "Id": "4f0a" * 16,
    "Name": "/shop-provider",
    "State": {"Status": "running", "Running": True},
    "HostConfig": {"NetworkMode": "shop-net"},
    "NetworkSettings": {
        "Ports": {
            "20880/tcp": [
                {"HostIp": "0.0.0.0", "HostPort": "49153"},
                {"HostIp": "::", "HostPort": "49154"},
            ],
            "22222/tcp": None,
            "5353/udp": [{"HostIp": "0.0.0.0", "HostPort": "5353"}],
        },
        "Networks": {
            "bridge": {"IPAddress": "172.17.0.3", "GlobalIPv6Address": ""},
            "shop-net": {"IPAddress": "172.20.0.2", "GlobalIPv6Address": "fd00:20::2"},
        },
    },
}


def test_inspect_body_becomes_addresses_and_tcp_bindings() -> None:
    """Every network's IPv4 and IPv6 address is kept; only published TCP ports become bindings."""
    container = to_container(INSPECTED)
    assert container.name == "shop-provider"
    assert container.network_mode == "shop-net"
    assert container.addresses == ("172.17.0.3", "172.20.0.2", "fd00:20::2")
    assert container.published == (
        PublishedPort(20880, "0.0.0.0", 49153),
        PublishedPort(20880, "::", 49154),
    )


def test_host_network_container_has_no_addresses() -> None:
    """A container on the host network has nothing the sidecar could map."""
    container = to_container(
        {"Id": "ab" * 32, "Name": "/h", "HostConfig": {"NetworkMode": "host"},
         "NetworkSettings": {"Networks": {"host": {"IPAddress": ""}}, "Ports": {}}}
    )  # fmt: skip
    assert container.network_mode == "host"
    assert container.addresses == ()
    assert container.published == ()


def test_bindings_that_are_not_ports_are_skipped() -> None:
    """A binding whose ports are not ASCII digits in 1-65535 (which a proxy in front of the
    Engine could send) is skipped; the container and its other bindings are still read."""
    ports = {
        "20880/tcp": [{"HostIp": "", "HostPort": "²"}, {"HostIp": "", "HostPort": "32768"}],
        "²/tcp": [{"HostIp": "", "HostPort": "1"}],
        "50051/tcp": [{"HostIp": "", "HostPort": "1" * 5000}, "junk", None],
        "8080/tcp": [{"HostIp": "", "HostPort": "0"}, {"HostIp": "", "HostPort": "70000"}],
        "9090/tcp": {"HostPort": "9090"},
    }
    container = to_container({**INSPECTED, "NetworkSettings": {**INSPECTED["NetworkSettings"],
                                                               "Ports": ports}})  # fmt: skip
    assert container.published == (PublishedPort(20880, "", 32768),)
