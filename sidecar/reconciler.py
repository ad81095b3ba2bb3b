"""A pass without its writes: read the dirty paths, prove ownership, plan every node.

``run`` applies what this returns and remembers what it now manages; ``plan`` prints it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace

from sidecar import labels
from sidecar.config import Settings
from sidecar.mapping import ContainerIndex
from sidecar.model import Create, Endpoint, Origins, RegistryNode
from sidecar.ownership import LocalAddresses, Marker, Ownership, read_marker
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
from sidecar.scope import LEASE_ROOT, DeploymentScope, Lease, peers_from
from sidecar.sources.host import interface_addresses


@dataclass(frozen=True)
class Managed:
    """A node one of the engine's sidecars wrote: ``managed_by`` names the live sidecar whose
    session owns it ("" if none: an earlier run's, to be taken over); ``decided_by`` what
    decided it, seen as that sidecar sees it (its scope, its address source)."""

    node: RegistryNode
    marker: Marker | None
    managed_by: str
    decided_by: str = ""


# Asking every server for its connections is not free: at most this often...
_ORIGINS_MIN_INTERVAL = 0.05
# ...but origins older than this are not trusted for a decision: a session may have gone.
_ORIGINS_MAX_AGE = 1.0


class Reconciler:
    """Reads and plans providers and instance paths; keeps what a plan needs across passes."""

    def __init__(
        self,
        settings: Settings,
        registry: ZooKeeperRegistry,
        advertise_host: str,
        engine_id: str,
        advertise_source: str = "--advertise-host",
    ) -> None:
        self.mode = Mode(settings.mode)
        self.roots = settings.root
        self.services_roots = settings.services_root
        # Each root's mirror counterpart: only with one root of each kind.
        self._mirrors: dict[str, str] = {}
        if len(settings.root) == 1 and len(settings.services_root) <= 1:
            self._mirrors = {settings.root[0]: settings.mirror_root} | dict(
                zip(settings.services_root, [settings.mirror_services_root], strict=False)
            )
        # Mirror paths are read once mirror mode is the default or a container asks for it.
        self.mirrors_in_use = self.mode is Mode.MIRROR
        self.advertise_host = advertise_host
        self.advertise_source = advertise_source
        self.engine_id = engine_id
        self.lease_parent = f"{LEASE_ROOT}/{engine_id}"
        self.scope = DeploymentScope()
        self.containers = ContainerIndex(())
        # This sidecar's rewritten nodes per path, as last written or seen.
        self.managed: dict[str, dict[str, Remembered]] = {}
        self._registry = registry
        self._origins_source = SessionOrigins(settings.zookeeper, settings.zookeeper_admin_port)
        self._origins: Origins | None = None
        self._origins_at = float("-inf")
        self._configured_host_addresses = set(settings.host_address)
        self._host_addresses = self._configured_host_addresses | {advertise_host}
        self._interface_addresses: set[str] = set()
        self.refresh_host_addresses()
        self._claims_by_path: dict[str, dict[Endpoint, set[int]]] = {}
        self._claims: dict[Endpoint, Counter[int]] = {}

    def mirror_of(self, parent: str) -> str | None:
        """The mirror root's counterpart of a path (once mirrors are in use)."""
        if not self.mirrors_in_use:
            return None
        return self._mirror_path(parent)

    def source_of(self, path: str) -> str | None:
        """The path a mirror path mirrors, or None for any other path."""
        if not self.mirrors_in_use:
            return None
        for root, mirror in self._mirrors.items():
            if path.startswith(mirror + "/"):
                return root + path.removeprefix(mirror)
        return None

    def set_address(self, address: str, source: str) -> None:
        """A new advertised address (the sessions of this host may come from it too)."""
        self.advertise_host, self.advertise_source = address, source
        self._host_addresses = self._configured_host_addresses | {address}

    def use_mirrors_if_asked(self) -> bool:
        """Start reading mirror paths once a container of this scope asks for mirror mode;
        True if that just happened (everything must be read again). Never stops: mirrors
        written earlier must still be followed."""
        if self.mirrors_in_use:
            return False
        for container in self.containers.by_id.values():
            try:
                asked = labels.parse(container.labels).mode == "mirror"
            except labels.InvalidLabels:
                continue
            if asked and self.scope.excludes(container.id) is None:
                self.mirrors_in_use = True
                return True
        return False

    def read_peers(self) -> None:
        """Read which other sidecars of this engine are alive (their leases)."""
        nodes = self._registry.read_providers([self.lease_parent])[self.lease_parent]
        leases = {node.name: (node.owner, node.data) for node in nodes}
        self.scope = replace(self.scope, peers=peers_from(leases, self.scope.lease_name))

    def refresh_host_addresses(self) -> None:
        """Read this host's addresses again."""
        self._interface_addresses = interface_addresses()

    def interface_addresses(self) -> set[str]:
        """This network namespace's own addresses (as last read)."""
        return set(self._interface_addresses)

    def session_gone(self, session: int) -> bool:
        """Whether every server says ``session`` is not connected (False if any server does
        not tell: a proof that is not complete proves nothing gone)."""
        self._fetch_origins(max_age=0.0)
        return self._origins is not None and self._origins.gone(session)

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
        if self._unknown_owners(scopes, session):
            self.read_peers()  # before taking over a node, know whether its owner is alive
        me = Identity(
            session, self.engine_id, self.advertise_host, self.mode, self.scope,
            self.advertise_source,
        )  # fmt: skip
        return [d for scope in scopes for d in plan_providers(scope, self.containers, me, owners)]

    def _unknown_owners(self, scopes: Iterable[Scope], session: int | None) -> bool:
        """Whether any of this engine's rewritten nodes is owned by a session that is neither
        this sidecar's nor a known peer's (an earlier run's, or a peer not yet seen)."""
        known = {0, session, *self.scope.peers}
        for scope in scopes:
            for node in (*scope.nodes, *scope.mirror):
                if node.owner not in known:
                    marker = read_marker(node.data)
                    if marker is not None and marker.engine == self.engine_id:
                        return True
        return False

    def intend(self, decisions: Iterable[Decision]) -> bool:
        """Write ahead: remember the nodes these decisions are about to create, so that a
        crash between the write and its confirmation loses nothing. True if that changed."""
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
        before = {p: dict(nodes) for p, nodes in self.managed.items()}
        planned: dict[str, dict[str, Remembered]] = {}
        for d in decisions:
            if self.source_of(d.node.parent) is not None:
                continue  # mirrors are derived from their originals, never restored from memory
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
        """The registrations this engine's sidecars manage, read from the live registry."""
        nodes = self._registry.read_providers([self.lease_parent])[self.lease_parent]
        leases = peers_from({n.name: (n.owner, n.data) for n in nodes}, own_lease="")
        roots = (*self.roots, *self.services_roots)
        sources = [p for root in roots for p in self.scope_paths(root)]
        mirrors = {m: p for p in sources if (m := self._mirror_path(p))}
        found = []
        nodes_by_lease: dict[Lease | None, dict[str, str]] = defaultdict(dict)  # node: source
        for parent, nodes in sorted(self._registry.read_providers([*sources, *mirrors]).items()):
            source = mirrors.get(parent, parent)
            instance_path = self._root_of(source) in self.services_roots
            for node in nodes:
                marker = read_marker(node.data)
                ours = marker is not None and marker.engine == self.engine_id
                if ours or (instance_path and node.owner in leases):
                    lease = leases.get(node.owner)
                    found.append((node, marker, lease))
                    nodes_by_lease[lease][node.path] = source
        # What decided each: the planner's view from the sidecar that manages it.
        decided: dict[str, str] = {}
        for lease, managed in nodes_by_lease.items():
            with self._seen_by(lease):
                plan = self.plan(sorted(set(managed.values())), session=None)
            decided |= {d.node.path: d.decided_by for d in plan if d.node.path in managed}
        return [
            Managed(node, marker, lease.describe() if lease else "", decided.get(node.path, ""))
            for node, marker, lease in found
        ]

    @contextlib.contextmanager
    def _seen_by(self, lease: Lease | None) -> Iterator[None]:
        """Plan as the sidecar holding ``lease`` would (this one's own view for None)."""
        own = self.scope, self.advertise_source
        if lease is not None:
            self.scope = DeploymentScope(app=lease.container, app_name=lease.container_name)
            self.advertise_source = lease.advertise_source or self.advertise_source
        try:
            yield
        finally:
            self.scope, self.advertise_source = own

    def _mirror_path(self, parent: str) -> str | None:
        root = self._root_of(parent)
        return self._mirrors[root] + parent.removeprefix(root) if root in self._mirrors else None

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
            unknown = self._origins is not None and bool(needed - set(self._origins.sessions) - {0})
            self._fetch_origins(max_age=0.0 if unknown else _ORIGINS_MAX_AGE)
        anywhere = {
            address
            for address in self._interface_addresses
            if not _is_loopback(address) and not self.containers.in_docker_network(address)
        }
        # A Docker gateway is this host's address too, even when the sidecar runs in a
        # container and cannot see the host's interfaces.
        local = LocalAddresses(
            anywhere=frozenset(anywhere | self._host_addresses),
            near=frozenset(self._interface_addresses | self.containers.gateways),
            containers=frozenset(local_containers),
        )
        return Ownership(self._origins, local, self._claims)

    def _fetch_origins(self, max_age: float) -> None:
        now = time.monotonic()
        age = now - self._origins_at
        if age > max_age and age >= _ORIGINS_MIN_INTERVAL:
            self._origins = self._origins_source.fetch()
            self._origins_at = now


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
