"""Value types shared by the sources, the planner and the registry."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum

# The pseudo-container of the static mapping (ports mapped without Docker).
STATIC_ID = "static"


@dataclass(frozen=True, order=True, slots=True)
class Endpoint:
    """A host and TCP port; IPv6 hosts are kept without brackets, in compressed form."""

    host: str
    port: int

    @classmethod
    def of(cls, host: str, port: int) -> Endpoint:
        return cls(endpoint_host(host), port)

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.host

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if self.is_ipv6 else f"{self.host}:{self.port}"


def endpoint_host(host: str) -> str:
    """An address as endpoints hold it: an IP literal compressed, a name in lower case."""
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        return host.lower()


@dataclass(frozen=True)
class PublishedPort:
    """One Docker port binding: a container's TCP port published on a host address and port."""

    container_port: int
    host_ip: str
    host_port: int

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.host_ip

    @property
    def any_host_address(self) -> bool:
        """True when Docker listens on every host address, so the advertised host is configured."""
        return self.host_ip in ("", "0.0.0.0", "::")


@dataclass(frozen=True)
class Container:
    """What the planner needs to know about one running container."""

    id: str
    name: str
    network_mode: str
    addresses: tuple[str, ...] = ()
    published: tuple[PublishedPort, ...] = ()
    not_serving: str = ""  # why a container that still exists cannot serve: paused, unhealthy
    labels: tuple[tuple[str, str], ...] = ()  # the sidecar's labels only (see labels.py)

    @property
    def short_id(self) -> str:
        return self.id[:12]


@dataclass(frozen=True, slots=True)
class RegistryNode:
    """A child of a ``providers`` path as read from ZooKeeper."""

    parent: str
    name: str
    data: bytes
    owner: int
    version: int

    @property
    def path(self) -> str:
        return f"{self.parent}/{self.name}"


@dataclass(frozen=True, slots=True)
class Listing:
    """A path's children's names, and its child version (which every create and delete of a
    child moves by one)."""

    names: list[str]
    version: int


@dataclass(frozen=True)
class Origin:
    """Where a ZooKeeper session connects from, and which server (its address) said so."""

    address: str
    server: str


@dataclass(frozen=True, eq=False)
class Origins:
    """Where the ensemble's sessions connect from, as the servers that answered tell.

    ``unanswered`` names the servers that did not tell (down, too slow, or refusing): a
    session none of the others knows may be connected to one of them, so it is unknown,
    not gone. Only a complete answer proves a session gone.
    """

    sessions: Mapping[int, Origin]
    unanswered: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return not self.unanswered

    def gone(self, session: int) -> bool:
        """Whether every server answered and none knows ``session``."""
        return self.complete and session not in self.sessions


# ZooKeeper's permission bits.
READ, WRITE, CREATE, DELETE, ADMIN = 1, 2, 4, 8, 16
_LETTERS = ((CREATE, "c"), (DELETE, "d"), (READ, "r"), (WRITE, "w"), (ADMIN, "a"))


@dataclass(frozen=True)
class AclEntry:
    """One ACL entry: who (scheme and id) may do what (permission bits)."""

    scheme: str
    id: str
    perms: int

    def __str__(self) -> str:
        letters = "".join(letter for bit, letter in _LETTERS if self.perms & bit)
        return f"{self.scheme}:{self.id}:{letters}"


@dataclass(frozen=True)
class Create:
    """Create a node: ephemeral, owned by the sidecar's session, unless ``persistent``."""

    path: str
    data: bytes
    persistent: bool = False


@dataclass(frozen=True)
class SetData:
    """Replace a node's data, only if it is still the version that was planned against."""

    path: str
    data: bytes
    version: int


@dataclass(frozen=True)
class Delete:
    """Delete a node, only if it is still the version that was planned against."""

    path: str
    version: int


@dataclass(frozen=True)
class Check:
    """Abort the whole transaction unless the node still has this version."""

    path: str
    version: int


Op = Create | SetData | Delete | Check


@dataclass(frozen=True)
class Transaction:
    """Operations that ZooKeeper applies all together or not at all (one ``multi``)."""

    ops: tuple[Op, ...] = field(default_factory=tuple)


class Connection(Enum):
    """The state of the sidecar's ZooKeeper connection, as its client reports it."""

    CONNECTED = "connected"  # a new session (or the first): every watch must be set again
    RESUMED = "resumed"  # the same session again, its watches set again by the servers
    SUSPENDED = "suspended"  # disconnected; the session may still live
    LOST = "lost"  # the session is gone


class Outcome(StrEnum):
    """How one transaction went."""

    APPLIED = "ok"
    FAILED = "failed"  # not applied: try again
    UNKNOWN = "unknown"  # the connection went during the write: perhaps applied
    DENIED = "denied"  # not authorised: left alone, not retried
    TOO_LARGE = "too-large"  # larger than the servers accept: left alone, not retried
    DRY_RUN = "dry-run"  # a registry that refuses writes (plan, status) was asked


@dataclass(frozen=True)
class WriteResult:
    """A transaction's outcome, and the error behind it (empty when applied)."""

    outcome: Outcome
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.APPLIED

    @property
    def maybe_applied(self) -> bool:
        """Applied, or perhaps applied: what was written must be remembered."""
        return self.outcome in (Outcome.APPLIED, Outcome.UNKNOWN)

    @property
    def retry(self) -> bool:
        return self.outcome in (Outcome.FAILED, Outcome.UNKNOWN)
