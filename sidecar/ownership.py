"""Which nodes are whose: the marker in rewritten nodes, and proof that a session is local.

A rewritten node carries a marker naming the original registration, the container and the
Docker engine, so any later run recognises it. An original registration is only rewritten
when its ZooKeeper session provably connects from this host (the servers' ``cons`` or
AdminServer ``connections`` tell each session's client address); when the servers do not
tell, only endpoints claimed by a single session are rewritten.
"""

from __future__ import annotations

import base64
import ipaddress
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any

from sidecar.hosts import parse_port
from sidecar.model import Endpoint, Origin, Origins, RegistryNode
from sidecar.quoting import shorten

TAG = "dubbo-nat-sidecar"
_PREFIX = b'{"' + TAG.encode() + b'":'


@dataclass(frozen=True)
class Marker:
    """Data of a rewritten node: what it replaced, and which container on which engine backs it."""

    original: str
    container_endpoint: Endpoint
    container: str
    engine: str
    provider_session: int = 0  # the session that registered the original (0: unknown)
    # Instances only: the original's data, to rewrite it again (kept in the state file).
    original_data: bytes = b""

    def to_state(self) -> dict[str, str]:
        """Everything, for the state file (instance markers live nowhere else)."""
        doc = json.loads(self.encode())
        doc["original_data"] = base64.b64encode(self.original_data).decode()
        return {k: str(v) for k, v in doc.items()}

    def encode(self) -> bytes:
        return json.dumps(
            {
                TAG: 1,
                "original": self.original,
                "container_endpoint": str(self.container_endpoint),
                "container": self.container,
                "engine": self.engine,
                "provider_session": f"{self.provider_session:#x}",
            },
            separators=(",", ":"),
        ).encode()


def marker_from_state(doc: object) -> Marker | None:
    """A marker saved with Marker.to_state (None for anything else)."""
    if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
        return None
    marker = read_marker(json.dumps({TAG: 1, **doc}).encode())
    if marker is None:
        return None
    try:
        return replace(marker, original_data=base64.b64decode(doc.get("original_data", "")))
    except ValueError:
        return None


def read_marker(data: bytes) -> Marker | None:
    """The marker in a node's data, or None for a node the sidecar did not write (or data
    that only starts like a marker)."""
    if not data.startswith(_PREFIX):
        return None
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    return _marker_of(doc)


def _marker_of(doc: dict[str, Any]) -> Marker | None:
    text = {key: doc.get(key) for key in ("original", "container_endpoint", "container", "engine")}
    session = doc.get("provider_session", "0")
    if not all(isinstance(value, str) for value in text.values()) or not isinstance(session, str):
        return None
    host, _, port = str(text["container_endpoint"]).rpartition(":")
    try:
        container_endpoint = Endpoint.of(host.strip("[]"), parse_port(port))
        provider_session = int(session, 0)
    except ValueError:
        return None
    if not -(2**63) <= provider_session < 2**63:
        return None
    return Marker(
        original=str(text["original"]),
        container_endpoint=container_endpoint,
        container=str(text["container"]),
        engine=str(text["engine"]),
        provider_session=provider_session,
    )


@dataclass(frozen=True)
class LocalAddresses:
    """The addresses that show a session comes from this host, and from which container.

    ``anywhere`` prove it to any server: the advertised host, configured host addresses, and
    interface addresses other than loopback and Docker networks. ``near`` are this host's
    own addresses as a server on this host sees them (interfaces, loopback, Docker
    gateways): they prove it only to a server at one of them (or at loopback); to a server
    on another host they mean a process on *that* host. ``containers`` are this engine's
    container addresses: to a server on this host, a session from one of them proves the
    registrations of that container only.
    """

    anywhere: frozenset[str]
    near: frozenset[str] = frozenset()
    containers: frozenset[str] = frozenset()

    def server_here(self, server: str) -> bool:
        """Whether the server at this address runs on this host."""
        return server in self.near or _is_loopback(server)


def only_here(address: str) -> bool:
    """Whether an address means a host only to whoever sees it: loopback (127.0.0.0/8,
    ``::1``) and link-local (169.254.0.0/16, ``fe80::/10``, which other links reuse). Such
    an address proves nothing about a host once it crosses to another one."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_link_local


class Ownership:
    """Decides whether a registration's session is provably this host's, and its container's."""

    def __init__(
        self,
        origins: Origins | None,
        local: LocalAddresses,
        claims: Mapping[Endpoint, Collection[int]],
    ) -> None:
        """``origins``: where sessions connect from (None: the servers do not tell);
        ``claims`` lists, per endpoint, the sessions that registered it anywhere."""
        self._origins = origins
        self._local = local
        self._claims = claims

    def disconnected(self, session: int) -> bool:
        """Whether ``session`` is known not to be connected now: every server answered and
        none knows it (a provider session that is gone leaves its registrations stale)."""
        return self._origins is not None and self._origins.gone(session)

    def connected(self, session: int) -> bool:
        return self._origins is not None and session in self._origins.sessions

    def unproven(self, node: RegistryNode) -> bool:
        """Whether no server that answered knew the node's session yet (worth asking again)."""
        return (
            node.owner != 0
            and self._origins is not None
            and node.owner not in self._origins.sessions
        )

    def refusal(
        self, node: RegistryNode, endpoint: Endpoint, container_addresses: Collection[str]
    ) -> str | None:
        """Why ``node`` (registering ``endpoint``, an address of the container with
        ``container_addresses``) must not be rewritten, or None if it may. Ephemeral nodes
        only: a persistent one has no session (see plan/persistent.py)."""
        if self._origins is None:
            sessions = set(self._claims.get(endpoint, ())) | {node.owner}
            if len(sessions) > 1:
                return (
                    f"{endpoint} is registered by {len(sessions)} ZooKeeper sessions and the "
                    "servers do not say where sessions connect from"
                )
            return None
        origin = self._origins.sessions.get(node.owner)
        if origin is None:
            if not self._origins.complete:
                silent = shorten("; ".join(self._origins.unanswered))
                return f"session 0x{node.owner:x} is unknown: not every server answered ({silent})"
            return f"session 0x{node.owner:x} is not connected now: cannot prove it is this host's"
        return self._origin_refusal(node.owner, origin, container_addresses)

    def _origin_refusal(
        self, session: int, origin: Origin, container_addresses: Collection[str]
    ) -> str | None:
        seen = f"from {origin.address} (as server {origin.server} sees it)"
        if origin.address in self._local.anywhere:
            return None  # this host's own address, however the session reached the server
        if self._local.server_here(origin.server):
            if origin.address in container_addresses or origin.address in self._local.near:
                return None
            if origin.address in self._local.containers:
                return f"registered by another container's session (0x{session:x} {seen})"
        return f"registered by session 0x{session:x} {seen}, not from this host"


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False
