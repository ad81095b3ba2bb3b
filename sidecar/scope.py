"""Which containers this sidecar manages: per-host (every container not claimed by a per-app
sidecar), or per-app (the one container whose network namespace it shares). Pure.

Every sidecar of a Docker engine holds a lease, an ephemeral node under
``/dubbo-nat-sidecar/leases/<engine>/``: ``host`` for the per-host sidecar, ``app-<container
id>`` for a per-app one. The leases tell each sidecar who its peers are, which containers
the per-app sidecars claim, and whose session owns which rewritten node.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sidecar.model import STATIC_ID, Container

LEASE_ROOT = "/dubbo-nat-sidecar/leases"
HOST_LEASE = "host"
_APP_PREFIX = "app-"


@dataclass(frozen=True)
class Lease:
    """A live sidecar of this engine, as its lease node says."""

    name: str
    session: int
    container_name: str = ""
    advertise_source: str = ""  # where its advertised address came from, as it said
    proxy: bool = False  # its app's requests go through its proxy, rewritten in flight

    @property
    def container(self) -> str:
        """The container a per-app sidecar serves ("" for the per-host one)."""
        return self.name.removeprefix(_APP_PREFIX) if self.name.startswith(_APP_PREFIX) else ""

    def describe(self) -> str:
        who = (
            f"the per-app sidecar of {self.container_name or self.container[:12]}"
            if self.container
            else "the per-host sidecar"
        )
        how = "proxy, " if self.proxy else ""
        return f"{who} ({how}session 0x{self.session:x})"


@dataclass(frozen=True)
class Scope:
    """What this sidecar manages, and the engine's other live sidecars (by session).

    ``app`` is the served container's id for a per-app sidecar, "" for the per-host one.
    ``settled``: a per-app sidecar has held its lease long enough for the per-host sidecar
    to have seen it, so it may take its container's rewrites over from it.
    """

    app: str = ""
    app_name: str = ""
    peers: Mapping[int, Lease] = field(default_factory=dict)
    settled: bool = True

    @property
    def lease_name(self) -> str:
        return f"{_APP_PREFIX}{self.app}" if self.app else HOST_LEASE

    def describe(self) -> str:
        return f"per-app sidecar of {self.app_name or self.app[:12]}" if self.app else "per-host"

    def excludes(self, container_id: str) -> str | None:
        """Why a container of this engine is not this sidecar's (None: it is)."""
        if container_id == STATIC_ID:
            return None  # the static mapping is this network namespace's own
        if self.app:
            if container_id == self.app:
                return None
            return f"outside this sidecar's scope (it serves {self.app_name or self.app[:12]})"
        for lease in self.peers.values():
            if lease.container == container_id:
                return f"managed by {lease.describe()}"
        return None

    def holder(self, session: int) -> Lease | None:
        """The other live sidecar whose session this is, if any."""
        return self.peers.get(session)

    def may_take_from(self, lease: Lease) -> bool:
        """A per-app sidecar takes its container over from the per-host one; nothing else
        is taken from a live sidecar."""
        return bool(self.app) and not lease.container and self.settled


def lease_data(scope: Scope, **about: str) -> bytes:
    """What a lease node says about its holder (for people reading the registry, and peers)."""
    return json.dumps({"scope": scope.describe(), "container_name": scope.app_name, **about},
                      separators=(",", ":")).encode()  # fmt: skip


def peers_from(leases: Mapping[str, tuple[int, bytes]], own_lease: str) -> dict[int, Lease]:
    """Leases read from the registry (name -> owner session and data), minus this sidecar's."""
    found = {}
    for name, (session, data) in leases.items():
        if name == own_lease or not (name == HOST_LEASE or name.startswith(_APP_PREFIX)):
            continue
        about = _about(data)
        found[session] = Lease(
            name, session, about.get("container_name", ""), about.get("advertise_source", ""),
            about.get("proxy") == "true",
        )  # fmt: skip
    return found


def _about(data: bytes) -> dict[str, str]:
    """The text fields of a lease's data (none if it is not a JSON object: a lease written by
    an older or foreign version still names its holder by its session)."""
    try:
        about = json.loads(data)
    except (ValueError, RecursionError):
        return {}
    if not isinstance(about, dict):
        return {}
    return {key: value for key, value in about.items() if isinstance(value, str)}


def app_in_namespace(
    containers: Sequence[Container], own_addresses: Iterable[str]
) -> Container | None:
    """The container whose network namespace this process shares, if any: the one whose
    addresses are this namespace's own, provided another container joined its namespace
    (the sidecar's, with ``network_mode: service:app``). If none did, the namespace is the
    sidecar's own container's: it serves no app."""
    mine = set(own_addresses)
    found = [c for c in containers if mine.intersection(c.addresses)]
    if len(found) != 1:
        return None
    owner = found[0]
    joined = [c for c in containers if _joins(c, owner)]
    return owner if joined else None


def _joins(container: Container, owner: Container) -> bool:
    """Whether ``container`` runs in ``owner``'s network namespace (``container:<id|name>``)."""
    mode, _, target = container.network_mode.partition(":")
    return (
        mode == "container"
        and bool(target)
        and (owner.id.startswith(target) or target == owner.name)
    )


def choose(
    kind: str, named: str | None, containers: Sequence[Container], own_addresses: Iterable[str]
) -> Scope | str:
    """The scope the settings ask for, given the running containers; a string says what
    it waits for. ``kind`` is ``auto``, ``host`` or ``app``; ``named`` the ``--container``."""
    if kind == "host":
        return Scope()
    if named:
        found = [c for c in containers if named in (c.name, c.id) or c.id.startswith(named)]
        if not found:
            return f"container {named} is not running"
        app = found[0]
        if app.network_mode.startswith("container:"):
            # It shares another container's namespace: that one holds the addresses.
            target = app.network_mode.removeprefix("container:")
            owners = [c for c in containers if _joins(app, c)]
            if not owners:
                return f"{target}, whose network namespace {named} shares, is not running"
            app = owners[0]
        return Scope(app=app.id, app_name=app.name)
    app_found = app_in_namespace([c for c in containers if c.id != STATIC_ID], own_addresses)
    if app_found is not None:
        return Scope(app=app_found.id, app_name=app_found.name)
    if kind == "app":
        return "no container shares this sidecar's network namespace"
    return Scope()
