"""A pass without its writes: read the dirty paths, prove ownership, plan every node.

``run`` applies what this returns and remembers what it now manages; ``plan`` prints it.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

from sidecar.config import Settings, servers
from sidecar.mapping import ContainerIndex
from sidecar.model import Create, Endpoint, Origin, RegistryNode
from sidecar.ownership import LEASE_ROOT, LocalAddresses, Marker, Ownership, read_marker
from sidecar.plan import (
    Action,
    Decision,
    Identity,
    Mode,
    Remembered,
    Scope,
    claims_in,
    plan_providers,
)
from sidecar.registry.sessions import SessionOrigins
from sidecar.registry.zookeeper import Outcome, ZooKeeperRegistry
from sidecar.sources.host import interface_addresses


@dataclass(frozen=True)
class Managed:
    """A node the engine's sidecar wrote; ``active``: owned by the lease holder's session."""

    node: RegistryNode
    marker: Marker | None
    active: bool


# Asking every server for its connections is not free: at most this often...
_ORIGINS_MIN_INTERVAL = 0.05
# ...but origins older than this are not trusted for a decision: a session may have gone.
_ORIGINS_MAX_AGE = 1.0


class Reconciler:
    """Reads and plans providers and instance paths; keeps what a plan needs across passes."""

    def __init__(
        self, settings: Settings, registry: ZooKeeperRegistry, advertise_host: str, engine_id: str
    ) -> None:
        self.mode = Mode(settings.mode)
        self.roots = settings.root
        self.services_roots = settings.services_root
        # Mirror mode: each root's counterpart (configuration allows one root of each kind).
        self._mirrors = dict(zip(settings.root, [settings.mirror_root], strict=False)) | dict(
            zip(settings.services_root, [settings.mirror_services_root], strict=False)
        )
        self.advertise_host = advertise_host
        self.engine_id = engine_id
        self.containers = ContainerIndex(())
        # This sidecar's rewritten nodes per path, as last written or seen.
        self.managed: dict[str, dict[str, Remembered]] = {}
        self._registry = registry
        self._origins_source = SessionOrigins(settings.zookeeper, settings.zookeeper_admin_port)
        self._origins: dict[int, Origin] | None = None
        self._origins_at = float("-inf")
        self._host_addresses = set(settings.host_address) | {advertise_host}
        self._servers = [host for host, _ in servers(settings.zookeeper)]
        self._interface_addresses: set[str] = set()
        self._local_servers: frozenset[str] = frozenset()
        self.refresh_host_addresses()
        self._claims_by_path: dict[str, dict[Endpoint, set[int]]] = {}
        self._claims: dict[Endpoint, Counter[int]] = {}

    def mirror_of(self, parent: str) -> str | None:
        """The mirror root's counterpart of a path (mirror mode only)."""
        if self.mode is not Mode.MIRROR:
            return None
        root = self._root_of(parent)
        return self._mirrors[root] + parent.removeprefix(root) if root else None

    def source_of(self, path: str) -> str | None:
        """The path a mirror path mirrors, or None for any other path."""
        if self.mode is not Mode.MIRROR:
            return None
        for root, mirror in self._mirrors.items():
            if path.startswith(mirror + "/"):
                return root + path.removeprefix(mirror)
        return None

    def refresh_host_addresses(self) -> None:
        """Read this host's addresses again, and which ZooKeeper servers run on it."""
        self._interface_addresses = interface_addresses()
        self._local_servers = frozenset(
            server for server in self._servers if _resolves_to(server, self._interface_addresses)
        )

    def interface_addresses(self) -> set[str]:
        """This network namespace's own addresses (as last read)."""
        return set(self._interface_addresses)

    def session_gone(self, session: int) -> bool:
        """Whether the servers say ``session`` is not connected (False if they do not tell)."""
        self._fetch_origins(max_age=0.0)
        return self._origins is not None and session not in self._origins

    def scope_paths(self, root: str) -> list[str]:
        """The paths to plan under a root: ``providers`` paths, or applications' paths."""
        if root in self.services_roots:
            return [f"{root}/{app}" for app in self._registry.list_children(root)]
        return self._registry.providers_paths(root)

    def plan(
        self,
        parents: Iterable[str],
        session: int | None,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> list[Decision]:
        """Read ``parents`` (and their mirrors) from ZooKeeper and decide every node."""
        parents = sorted(parents)
        mirrors = {p: m for p in parents if (m := self.mirror_of(p))}
        # Instance data changes in place (Curator updates it): never taken from a cache.
        instance_paths = {
            path
            for path in [*parents, *mirrors.values()]
            if self._root_of(self.source_of(path) or path) in self.services_roots
        }
        read = self._registry.read_providers(
            [*parents, *mirrors.values()], progress, uncached=instance_paths
        )
        scopes = [
            Scope(
                parent,
                read[parent],
                remembered=list(self.managed.get(parent, {}).values()),
                mirror_parent=mirrors.get(parent),
                mirror=read.get(mirrors.get(parent, ""), []),
                instances=self._root_of(parent) in self.services_roots,
            )
            for parent in parents
        ]
        # Only endpoints of local containers can need a claim count; the paths that mention an
        # address are read again when a container takes it.
        local = self.containers.addresses()
        for scope in scopes:
            claims = {e: s for e, s in claims_in(scope).items() if e.host in local}
            self._set_claims(scope.parent, claims)
        owners = self._ownership(parents)
        me = Identity(session, self.engine_id, self.advertise_host, self.mode)
        return [d for scope in scopes for d in plan_providers(scope, self.containers, me, owners)]

    def intend(self, decisions: Iterable[Decision]) -> bool:
        """Write ahead: remember the nodes these decisions are about to create, so that a
        crash between the write and its confirmation loses nothing. True if that changed."""
        if self.mode is Mode.MIRROR:
            return False
        changed = False
        for d in decisions:
            created = _created(d) if d.action.writes else None
            if created is not None:
                nodes = self.managed.setdefault(created.node.parent, {})
                changed |= created.node.name not in nodes
                nodes.setdefault(created.node.name, created)
        return changed

    def remember(
        self, decisions: Iterable[Decision], outcomes: Mapping[Decision, Outcome], session: int
    ) -> bool:
        """Update what this sidecar manages from a pass's results; True if that changed."""
        if self.mode is Mode.MIRROR:
            return False  # mirrors are derived from the originals, never restored from memory
        before = {p: dict(nodes) for p, nodes in self.managed.items()}
        planned: dict[str, dict[str, Remembered]] = {}
        for d in decisions:
            previous = before.get(d.node.parent, {})
            now = planned.setdefault(d.node.parent, {})
            outcome = outcomes.get(d)
            created = _created(d) if d.action.writes else None
            if d.action is Action.KEEP and d.rewritten_path and d.marker is not None:
                now[d.node.name] = Remembered(d.node, d.marker)
            elif d.action is Action.HOLD or (d.action is Action.REMOVE and d.suspended):
                if d.node.name in previous:
                    now[d.node.name] = previous[d.node.name]
                elif d.marker is not None:
                    now[d.node.name] = Remembered(d.node, d.marker)
            elif not d.action.writes:
                continue
            elif outcome is None or outcome.ok or outcome.unknown:
                # Applied, or perhaps applied: remember the result (later passes forget it
                # if it never appeared and its original is back).
                if created is not None:
                    now[created.node.name] = replace(
                        created, node=replace(created.node, owner=session)
                    )
                if outcome is not None and outcome.unknown and d.node.name in previous:
                    now[d.node.name] = previous[d.node.name]
            elif d.node.name in previous:
                now[d.node.name] = previous[d.node.name]  # not applied: still to do
        for parent, nodes in planned.items():
            if nodes:
                self.managed[parent] = nodes
            else:
                self.managed.pop(parent, None)
        return self.managed != before

    def managed_endpoints(self) -> set[Endpoint]:
        """The container endpoints behind this sidecar's rewrites (what the prober checks)."""
        return {
            r.marker.container_endpoint for nodes in self.managed.values() for r in nodes.values()
        }

    def managed_now(self) -> list[Managed]:
        """The registrations this engine's sidecar manages, read from the live registry."""
        holder = self._registry.owner_of(f"{LEASE_ROOT}/{self.engine_id}")
        roots = (*self.roots, *self.services_roots)
        paths = [p for root in roots for p in self.scope_paths(root)]
        paths = [self.mirror_of(p) or p for p in paths]
        rows = []
        for parent, nodes in sorted(self._registry.read_providers(paths).items()):
            instance_path = self._root_of(self.source_of(parent) or parent) in self.services_roots
            for node in nodes:
                marker = read_marker(node.data)
                ours = marker is not None and marker.engine == self.engine_id
                if ours or (instance_path and holder is not None and node.owner == holder):
                    rows.append(Managed(node, marker, node.owner == holder))
        return rows

    def _root_of(self, path: str) -> str | None:
        for root in (*self.roots, *self.services_roots):
            if path.startswith(root + "/"):
                return root
        return None

    def forget(self, parent: str) -> None:
        """A providers path that no longer exists."""
        self.managed.pop(parent, None)
        self._set_claims(parent, {})

    def _set_claims(self, parent: str, claims: dict[Endpoint, set[int]]) -> None:
        for endpoint, sessions in self._claims_by_path.pop(parent, {}).items():
            counter = self._claims[endpoint]
            counter.subtract(sessions)
            for session in sessions:
                if counter[session] <= 0:
                    del counter[session]
            if not counter:
                del self._claims[endpoint]
        if claims:
            self._claims_by_path[parent] = claims
            for endpoint, sessions in claims.items():
                self._claims.setdefault(endpoint, Counter()).update(sessions)

    def _ownership(self, parents: list[str]) -> Ownership:
        local_containers = self.containers.addresses()
        needed = {
            session
            for parent in parents
            for endpoint, sessions in self._claims_by_path.get(parent, {}).items()
            if endpoint.host in local_containers
            for session in sessions
        }
        if needed:
            unknown = self._origins is not None and bool(needed - set(self._origins) - {0})
            self._fetch_origins(max_age=0.0 if unknown else _ORIGINS_MAX_AGE)
        anywhere = {
            address
            for address in self._interface_addresses
            if not _is_loopback(address) and not self.containers.in_docker_network(address)
        }
        # A server at a Docker gateway runs on this host too, even when the sidecar runs in a
        # container and cannot see the host's interfaces.
        gateway_servers = {s for s in self._servers if s.strip("[]") in self.containers.gateways}
        local = LocalAddresses(
            anywhere=frozenset(anywhere | self._host_addresses),
            near=frozenset(self._interface_addresses | local_containers),
            local_servers=self._local_servers | gateway_servers,
        )
        return Ownership(self._origins, local, self._claims)

    def _fetch_origins(self, max_age: float) -> None:
        now = time.monotonic()
        age = now - self._origins_at
        if age > max_age and age >= _ORIGINS_MIN_INTERVAL:
            self._origins = self._origins_source.fetch()
            self._origins_at = now


def _resolves_to(host: str, addresses: set[str]) -> bool:
    """Whether ``host`` names this machine (loopback, or one of its addresses)."""
    try:
        resolved = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return any(_is_loopback(a) or a in addresses for a in resolved)


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _created(decision: Decision) -> Remembered | None:
    """The node a decision creates in its own path, with its marker."""
    path = decision.rewritten_path
    if path is None or decision.transaction is None or decision.marker is None:
        return None
    data = next(op.data for op in decision.transaction.ops if isinstance(op, Create))
    parent, _, name = path.rpartition("/")
    if parent != decision.node.parent:
        return None
    return Remembered(RegistryNode(parent, name, data, 0, 0), decision.marker)
