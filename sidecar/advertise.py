"""Which host address the sidecar advertises: explicit, HOST_IP, or the route to ZooKeeper."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass

from sidecar.config import ConfigError, Settings, servers


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
    host, port = servers(connect_string)[0]
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, proto=socket.IPPROTO_UDP)[
            0
        ]
        with socket.socket(family, kind, proto) as probe:
            probe.connect(address)  # UDP: picks a route, sends nothing
            return str(probe.getsockname()[0])
    except OSError as exc:
        raise ConfigError(
            f"cannot detect the advertise host from the route to {host}:{port} ({exc}); "
            "set --advertise-host or HOST_IP"
        ) from None
