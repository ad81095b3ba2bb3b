"""Which host address the sidecar advertises: explicit, HOST_IP, or the route to ZooKeeper."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass

from sidecar.config import ConfigError, Settings


@dataclass(frozen=True)
class AdvertiseHost:
    address: str
    source: str


def resolve(settings: Settings, environ: Mapping[str, str]) -> AdvertiseHost:
    """The advertised host and where it came from; raise ConfigError if it cannot be found."""
    if settings.advertise_host:
        return AdvertiseHost(settings.advertise_host, "--advertise-host")
    if environ.get("HOST_IP"):
        return AdvertiseHost(environ["HOST_IP"].strip("[]"), "HOST_IP")
    return AdvertiseHost(_route_to(settings.zookeeper), "route to ZooKeeper")


def _route_to(connect_string: str) -> str:
    """The local address the kernel would use to reach the first ZooKeeper server."""
    host_port = connect_string.split("/", 1)[0].split(",")[0]
    host, _, port = host_port.rpartition(":") if host_port.count(":") == 1 else (host_port, "", "")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host.strip("[]") or host_port, int(port or 2181), proto=socket.IPPROTO_UDP
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.connect(address)  # UDP: picks a route, sends nothing
            return str(probe.getsockname()[0])
    except OSError as exc:
        raise ConfigError(
            f"cannot detect the advertise host from the route to {host_port} ({exc}); "
            "set --advertise-host or HOST_IP"
        ) from None
