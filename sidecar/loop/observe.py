"""The observe step: only I/O. Reads the dirty paths (and their mirrors) from the registry and
asks the servers where sessions connect from, as far as the planner needs it."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from sidecar.loop.memory import Memory
from sidecar.loop.paths import Roots
from sidecar.mapping import ContainerIndex
from sidecar.model import Endpoint, Origins, endpoint_host
from sidecar.ownership import LocalAddresses, Ownership, only_here
from sidecar.plan import PathView, claims_in
from sidecar.plan.parsing import Parses
from sidecar.protocols import OriginSource, Reads

# Asking every server for its connections is not free: at most this often...
_ORIGINS_MIN_INTERVAL = 0.05
# ...and an answer older than this is not trusted to say a session is gone, or, when the
# servers would not say, asked for again.
_ORIGINS_MAX_AGE = 1.0


@dataclass(frozen=True)
class Observation:
    """What the planner needs of some paths: what each holds, and who may be proven local.
    ``strangers``: some rewritten node of this engine is owned by a session that is neither
    this sidecar's nor a known peer's (read the leases before taking it over)."""

    views: list[PathView]
    # Per path read, the sessions registering each endpoint of a local container there.
    claims: dict[str, dict[Endpoint, set[int]]]
    origins: Origins | None
    local: LocalAddresses
    strangers: bool

    def ownership(self, claims: Mapping[Endpoint, Counter[int]]) -> Ownership:
        """Who may be proven local, given every path's claims (``Memory.claims``)."""
        return Ownership(self.origins, self.local, claims)


class Observer:
    """Reads paths and session origins; keeps the origins it fetched for a moment."""

    def __init__(
        self,
        registry: Reads,
        origins: OriginSource,
        roots: Roots,
        configured_host_addresses: Iterable[str],
        clock: Callable[[], float] = time.monotonic,
        member: bool = False,
    ) -> None:
        """``member``: in a fleet, paths are read without watches (the indexer watches), and
        of their nodes only those whose names could concern this host (the other hosts'
        are their sidecars' business: not read, not planned)."""
        self._registry = registry
        self._origins_source = origins
        self._roots = roots
        self._configured = frozenset(configured_host_addresses)
        self._clock = clock
        self._member = member
        self._origins: Origins | None = None
        self._origins_at = float("-inf")  # when the servers began giving that answer
        self._origins_pass = 0  # the pass during which the servers began giving it
        self._pass = 0  # passes begun

    def host_addresses(self, interface_addresses: set[str]) -> set[str]:
        """This host's addresses as other hosts and the servers see them: its interfaces'
        (not loopback or link-local: those mean "here" only to whoever sees them) and the
        configured ones."""
        return {a for a in interface_addresses if not only_here(a)} | set(self._configured)

    def session_gone(self, session: int) -> bool:
        """Whether every server says ``session`` is not connected (False if any server does
        not tell: a proof that is not complete proves nothing gone)."""
        self._fetch_origins(max_age=0.0)
        return self._origins is not None and self._origins.gone(session)

    def observe(
        self,
        parents: list[str],
        memory: Memory,
        containers: ContainerIndex,
        interface_addresses: set[str],
        host_addresses: set[str],
        known_sessions: set[int],
        engine: str,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> Observation:
        """Read ``parents`` and what proving their owners takes: where the sessions that
        registered local endpoints connect from, asked of the servers now (in a fleet too:
        what the coordination nodes say is never proof). ``host_addresses``: the advertised
        host and configured ones; ``known_sessions``: this sidecar's and its peers'."""
        concerning = None
        if self._member:
            concerning = frozenset(
                endpoint_host(a)
                for a in containers.addresses() | interface_addresses | host_addresses
                | self._configured | containers.gateways | containers.advertised_addresses()
            )  # fmt: skip
        views = self.read(parents, memory, progress, concerning, containers.in_docker_network)
        # Only endpoints of local containers can need a claim count; the paths that mention
        # an address are read again when a container takes it.
        local = containers.addresses()
        claims = {
            view.parent: {e: s for e, s in claims_in(view).items() if e.host in local}
            for view in views
        }
        needed = {s for found in claims.values() for sessions in found.values() for s in sessions}
        needed |= _vanished_providers(views)
        if needed and self._origins is None:
            self._fetch_origins(max_age=_ORIGINS_MAX_AGE)  # the servers would not say
        elif needed - set(self._origins.sessions if self._origins else ()) - {0}:
            # A session the last answer does not know: an answer begun after this pass began
            # knows every session whose node the pass read (unless it is gone).
            self._fetch_origins(this_pass=True)
        elif any(view.remembered for view in views):
            # Whether a rewrite's provider session is gone is decided on an answer at most a
            # second old. A session the answer knows as connected connects from where it did
            # then (sessions do not move between hosts): proving a new node needs no more.
            self._fetch_origins(max_age=_ORIGINS_MAX_AGE)
        addresses = self._local(containers, interface_addresses, host_addresses)
        strangers = _strangers(views, known_sessions, engine)
        return Observation(views, claims, self._origins, addresses, strangers)

    def read(
        self,
        parents: list[str],
        memory: Memory,
        progress: Callable[[str, int, int], None] | None = None,
        concerning: frozenset[str] | None = None,
        in_network: Callable[[str], bool] = lambda _: False,
    ) -> list[PathView]:
        """What the registry holds under ``parents`` (and their mirrors), as the planner sees
        it, with the rewrites this sidecar remembers there. ``concerning``: only nodes whose
        names register one of these addresses or one ``in_network`` of this host's Docker
        networks, say nothing of one, or are remembered."""
        mirrors = {p: m for p in parents if (m := self._roots.mirror_of(p))}
        every = [*parents, *mirrors.values()]
        # Instance data changes in place (Curator updates it): never taken from a cache.
        instance_paths = {path for path in every if self._roots.holds_instances(path)}
        # What a name is parsed to here to choose the nodes to read is what it is planned by
        # (a mirror's names, by its original path's view).
        parses = {parent: Parses() for parent in parents}
        parses |= {parent: parses[original] for original, parent in mirrors.items()}

        def wanted(parent: str, name: str) -> bool:
            assert concerning is not None
            host = parses[parent].host(name, parent in instance_paths)
            return (
                host is None
                or host in concerning
                or memory.remembers(parent, name)
                or in_network(host)  # a container may take it (the path is indexed by it)
            )

        read = self._registry.read_paths(
            every, progress, uncached=instance_paths, watch=not self._member,
            wanted=None if concerning is None else wanted,
        )  # fmt: skip
        return [
            PathView(
                parent,
                read[parent],
                remembered=memory.remembered(parent),
                mirror_parent=mirrors.get(parent),
                mirror=read.get(mirrors.get(parent, ""), []),
                instances=self._roots.holds_instances(parent),
                parsed=parses[parent],
            )
            for parent in parents
        ]

    def sessions_gone(self, sessions: set[int]) -> set[int]:
        """Of ``sessions``, those every server says is not connected now (the servers are
        asked when their last answer is over a second old)."""
        if sessions:
            self._fetch_origins(max_age=_ORIGINS_MAX_AGE)
        origins = self._origins
        return {s for s in sessions if origins is not None and origins.gone(s)}

    def _local(
        self, containers: ContainerIndex, interface_addresses: set[str], host_addresses: set[str]
    ) -> LocalAddresses:
        anywhere = {
            address
            for address in interface_addresses
            if not only_here(address) and not containers.in_docker_network(address)
        }
        # A Docker gateway is this host's address too, even when the sidecar runs in a
        # container and cannot see the host's interfaces.
        return LocalAddresses(
            anywhere=frozenset(anywhere | host_addresses | self._configured),
            near=frozenset(interface_addresses | containers.gateways),
            containers=frozenset(containers.addresses()),
        )

    def began(self) -> None:
        """A pass begins: the nodes it reads were there (their sessions connected) before
        any answer the servers begin giving from now on."""
        self._pass += 1

    def _fetch_origins(self, max_age: float = float("inf"), this_pass: bool = False) -> None:
        """Have an answer at most ``max_age`` old, or (``this_pass``) begun during this
        pass; one is asked for now unless the last was less than a moment ago."""
        now = self._clock()
        age = now - self._origins_at
        stale = age > max_age or (this_pass and self._origins_pass != self._pass)
        if stale and age >= _ORIGINS_MIN_INTERVAL:
            self._origins = self._origins_source.fetch()
            self._origins_at, self._origins_pass = now, self._pass


def _vanished_providers(views: Iterable[PathView]) -> set[int]:
    """The provider sessions of remembered rewrites gone from their paths: restoring one
    takes the servers' proof that its provider is still this host's."""
    found = set()
    for view in views:
        if view.remembered:
            present = {node.name for node in view.nodes}
            found |= {r.marker.provider_session for r in view.remembered
                      if r.node.name not in present}  # fmt: skip
    return found - {0}


def _strangers(views: Iterable[PathView], known_sessions: set[int], engine: str) -> bool:
    known = {0, *known_sessions}
    for view in views:
        for node in (*view.nodes, *view.mirror):
            if node.owner not in known:
                marker = view.parsed.marker(node.data)
                if marker is not None and marker.engine == engine:
                    return True
    return False
