"""The fleet's indexer: the one elected sidecar that watches the whole registry for every
host, and publishes to each member (one persistent node each, which only that member
watches) the paths that concern it. Driven by the loop thread of the sidecar elected.

It reads names only (no data): a node's address is in its name. A node's session is looked
up (one ``exists``) when its name's address could be a member's; the servers say where each
session connects from (``cons``), which routes the node to that host's sidecar. Everything it
holds is derived from the registry and rebuilt when another sidecar is elected.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Protocol

from sidecar.coordination.publishing import Publisher
from sidecar.fleet.nodes import Problems, read_member
from sidecar.fleet.routes import Facts, Member, Members, Routes, where_from
from sidecar.fleet.work import part_path, split
from sidecar.model import Listing
from sidecar.periodic_sweep import sweep_slice
from sidecar.plan.parsing import named_host
from sidecar.protocols import Coordination, OriginSource, Reads

FLEET_ROOT = "/dubbo-nat-sidecar/fleet"
MEMBERS = f"{FLEET_ROOT}/members"
WORK = f"{FLEET_ROOT}/work"
ELECTION = f"{FLEET_ROOT}/election"
# Sessions looked up per pass at most: a new indexer routes by address at once, by session
# soon after, without one pass holding everything back.
_LOOKUPS_PER_PASS = 5000


class FleetRegistry(Reads, Coordination, Protocol):
    """What the fleet needs of the registry: reads, and its coordination nodes."""


class Indexer:
    """The registry as the fleet needs it: every path's names, the sessions that matter."""

    def __init__(
        self,
        registry: FleetRegistry,
        roots: tuple[str, ...],
        services_roots: tuple[str, ...],
        origins: OriginSource,
        junk: Problems,
        unwritable: Problems,
        max_request: int,
    ) -> None:
        """``junk``: where member nodes that are none are reported; ``unwritable``: where
        work nodes that cannot be written are; ``max_request``: the servers'
        jute.maxbuffer (a work node takes at most half of it)."""
        self._registry: Reads = registry  # writes go through the publisher
        self._publisher = Publisher(registry)
        self._junk = junk
        self._unwritable = unwritable
        self._roots = roots
        self._services = services_roots
        self._origins_source = origins
        self._facts: dict[str, dict[str, Facts]] = {}
        self._versions: dict[str, int] = {}  # path -> its child version, as last listed
        self._paths: dict[str, set[str]] = {root: set() for root in (*roots, *services_roots)}
        self._members = Members(())
        self._member_nodes: dict[str, Member] = {}  # member node name -> what it says
        self._routes = Routes()
        # session -> the addresses that tell where it connects from (see routes.where_from)
        self._addresses: dict[int, frozenset[str]] = {}
        self.here: str | None = None  # an address of the indexer's own host
        self._pending: set[tuple[str, str]] = set()  # nodes whose session is not looked up yet
        self._dirty: set[str] = set()  # members whose work changed since published
        self._unrouted: set[str] = set()  # paths whose nodes changed since they were routed
        self._parts: dict[str, int] = {}  # member -> how many work nodes hold its work
        self._part_budget = max_request // 2
        self._swept_up_to = 0
        self.members_path = MEMBERS

    @property
    def members(self) -> Members:
        return self._members

    def rebuild(self) -> None:
        """Read everything again (elected, or a new session): roots, paths, members."""
        self._facts.clear()
        self._versions.clear()
        self._pending.clear()
        self._paths = {root: set() for root in self._paths}  # every path is listed again
        self.read_members()
        self.roots_changed(set(self._paths))

    def roots_changed(self, roots: Iterable[str]) -> None:
        listed = self._registry.list_names(list(roots))
        for root, listing in listed.items():
            now = {self._path_of(root, n) for n in (listing.names if listing else ())}
            for gone in self._paths[root] - now:
                self._facts.pop(gone, None)
                self._versions.pop(gone, None)
                self._reroute(gone)
            added = now - self._paths[root]
            self._paths[root] = now
            self.paths_changed(added)

    def paths_changed(self, paths: Iterable[str]) -> None:
        """List these paths again (watched) and route what changed. An instance path is also
        reported when one of its nodes' data changed: its versions are looked up again. A
        child version that moved more than the names that came and went explain means a
        node was deleted and created again under its name: sessions are looked up again."""
        paths = [p for p in paths if self._root_of(p) is not None]
        for path, listing in self._registry.list_names(paths).items():
            before = self._facts.get(path, {})
            names = listing.names if listing else []
            again = self._root_of(path) in self._services or self._recreated(path, before, listing)
            now: dict[str, Facts] = {}
            self._versions[path] = listing.version if listing else -1
            for name in names:
                known = before.get(name)
                now[name] = known if known is not None else self._facts_of(path, name)
                if again and known is not None and known.owner is not None:
                    self._pending.add((path, name))
            self._facts[path] = now
            self._reroute(path)

    def _recreated(self, path: str, before: dict[str, Facts], listing: Listing | None) -> bool:
        """Whether some name listed both times may stand for another node now."""
        version = self._versions.get(path)
        if listing is None or version is None or version < 0:
            return False
        moved = len(set(listing.names) ^ set(before))
        return listing.version - version > moved

    def read_members(self, changed: Iterable[str] | None = None) -> None:
        """The live members, from their (ephemeral) member nodes: all of them again (None),
        or as ``changed`` says (the members node: its listing; a member node: its data).
        Routes are redone only when what routes changed, not a member's status figures."""
        nodes = dict(self._member_nodes)
        to_read = set()
        if changed is None or MEMBERS in changed:
            listing = self._registry.list_names([MEMBERS])[MEMBERS]
            names = set(listing.names if listing else ())
            nodes = {name: m for name, m in nodes.items() if name in names}
            to_read = names if changed is None else names - set(nodes)
            for path in self._junk.nodes:
                if path.startswith(MEMBERS + "/") and path.rpartition("/")[2] not in names:
                    self._junk.clear("member", path)
        if changed is not None:
            to_read |= {p.rpartition("/")[2] for p in changed if p.startswith(MEMBERS + "/")}
        for name in to_read:
            path = f"{MEMBERS}/{name}"
            node = self._registry.watch_node(path)
            found = read_member(node) if node is not None else None
            nodes.pop(name, None)
            if isinstance(found, Member):
                nodes[name] = found
            if isinstance(found, str):
                self._junk.add("member", path, found)  # anyone can write there
            else:
                self._junk.clear("member", path)
        self._member_nodes = nodes
        if set(nodes.values()) != set(self._members.by_id.values()):
            self._route_members(list(nodes.values()))

    def _route_members(self, members: list[Member]) -> None:
        for gone in set(self._members.by_id) - {m.id for m in members}:
            self._routes.forget(gone)
        # Each member's work is written once by each indexer (it may hold an earlier
        # indexer's); after that, only when it changes.
        self._dirty |= {m.id for m in members} - set(self._members.by_id)
        self._members = Members(members)
        for path, facts in self._facts.items():
            for name, fact in facts.items():  # addresses new members bring
                if fact.owner is None and fact.host and self._worth_looking_up(path, fact.host):
                    self._pending.add((path, name))
            self._reroute(path)

    def look_up(self) -> int:
        """Sessions (and instance versions) of the nodes that may concern a member; how many
        were looked up."""
        batch = sorted(self._pending)[:_LOOKUPS_PER_PASS]
        self._pending.difference_update(batch)
        paths = [f"{parent}/{name}" for parent, name in batch]
        instance = [p for p in paths if self._root_of(p) in self._services]
        stats = self._registry.stats([p for p in paths if p not in instance])
        stats |= self._registry.stats(instance, watch=True)
        unknown_session = False
        touched = set()
        for (parent, name), path in zip(batch, paths, strict=True):
            facts = self._facts.get(parent, {})
            if name not in facts or stats.get(path) is None:
                continue
            owner, version = stats[path]  # type: ignore[misc]
            facts[name] = Facts(facts[name].host, owner, version)
            unknown_session |= owner != 0 and owner not in self._addresses
            touched.add(parent)
        if unknown_session:
            found = self._origins_source.fetch()
            if found is not None:
                self._addresses = {
                    s: where_from(origin, self.here) for s, origin in found.sessions.items()
                }
        for parent in touched:
            self._reroute(parent)
        return len(batch)

    def sweep(self) -> None:
        """List the next slice of the paths again (each path once every SWEEP_RESYNCS
        periodic resyncs): what a lost watch would hide is found, as a sidecar without the
        fleet finds it."""
        everything = sorted(self._facts)
        part, self._swept_up_to = sweep_slice(everything, self._swept_up_to)
        self.paths_changed(part)

    @property
    def units(self) -> int:
        """The paths indexed for the fleet."""
        return len(self._facts)

    @property
    def pending(self) -> int:
        """Registrations whose session is still to be looked up."""
        return len(self._pending)

    def unserved(self) -> dict[str, int]:
        """Per host with no member: registrations with a container's address (not the
        host's own) whose session connects from it; as far as sessions were looked up."""
        found: dict[str, int] = {}
        for facts in self._facts.values():
            for fact in facts.values():
                origin = self._addresses.get(fact.owner or 0)
                if not origin or fact.host is None or fact.host in origin:
                    continue
                if not self._members.concerned(fact, self._addresses):
                    host = min(origin)
                    found[host] = found.get(host, 0) + 1
        return found

    @property
    def busy(self) -> bool:
        """Whether sessions are still to be looked up (another pass is due at once)."""
        return bool(self._pending)

    def publish(self, now: float) -> int:
        """Write the work of each member whose work changed (all at once), except where an
        earlier write failed and its retry is not due yet; how many nodes were written. A
        node that cannot be written (no permission, anything) holds back no other: it is
        reported, and tried again later each time it fails again."""
        self._route()
        due = sorted(m for m in self._dirty if self._publisher.due(m, now))
        written, failing = self._publisher.publish({m: self._parts_of(m) for m in due}, now)
        self._dirty.difference_update(m for m in due if m not in failing)
        still = {p: why for p, why in self._unwritable.nodes.items() if _member_of(p) not in due}
        self._unwritable.found(
            "unwritable", still | {f"{WORK}/{m}": why for m, why in failing.items()}
        )
        return written

    def next_retry(self) -> float:
        """When the earliest work write that failed is due again (infinity: none)."""
        return self._publisher.next_retry(self._dirty)

    def _parts_of(self, member: str) -> dict[str, bytes]:
        """A member's work nodes: each path with its digest and child version (a member that
        finds there the version its own write left knows the change is its own: nothing to
        read again). Where to look, never proof: a member asks the servers itself."""
        routed = self._routes.work.get(member, {})
        paths = {p: (digest, self._versions.get(p, -1)) for p, digest in routed.items()}
        parts = split(paths, self._part_budget, self._parts.get(member, 1))
        self._parts[member] = len(parts)
        return {part_path(WORK, member, i): data for i, data in enumerate(parts)}

    def _reroute(self, path: str) -> None:
        # Routed once, when the work is published: a node seen before its session is looked
        # up (in the same pass) would first be routed by its address, often a container's
        # that every member has, and then again to one member.
        self._unrouted.add(path)

    def _route(self) -> None:
        for path in self._unrouted:
            facts = self._facts.get(path, {})
            self._dirty |= self._routes.reroute(path, facts, self._members, self._addresses)
        self._unrouted.clear()

    def _facts_of(self, path: str, name: str) -> Facts:
        host = named_host(name, self._root_of(path) in self._services)
        if host is not None and self._worth_looking_up(path, host):
            self._pending.add((path, name))
        return Facts(host)

    def _worth_looking_up(self, path: str, host: str) -> bool:
        """Whether a node's session must be looked up to route it: its address could be a
        member's but does not say whose (an instance is always looked up: its version too)."""
        if self._root_of(path) in self._services:
            return self._members.could_concern(host)
        return self._members.ambiguous(host)

    def _path_of(self, root: str, name: str) -> str:
        return f"{root}/{name}" if root in self._services else f"{root}/{name}/providers"

    def _root_of(self, path: str) -> str | None:
        for root in self._paths:
            if path.startswith(root + "/"):
                return root
        return None


def _member_of(work_path: str) -> str:
    """The member a work node (a part of its work) belongs to."""
    return work_path.removeprefix(WORK + "/").split("/")[0]


def member_data(
    session: int, hosts: Iterable[str], containers: Iterable[str], **about: object
) -> bytes:
    """What a member node says: its session, the addresses that route work to it, and what
    ``status --fleet`` shows about it."""
    doc = {"session": f"{session:x}", "hosts": sorted(hosts), "containers": sorted(containers)}
    return json.dumps(doc | about, separators=(",", ":"), sort_keys=True).encode()
