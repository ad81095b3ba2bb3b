"""Which registrations concern which sidecar of the fleet (pure).

The elected indexer (sidecar/fleet/indexer.py) watches the whole registry once for the
fleet; every other sidecar learns only of the paths that concern its own host. A node
concerns a member when its session is the member's (its rewrites), when its session connects
from one of the member's addresses (the member's host, or one of its containers: a provider
there), or, for a persistent node (no session), when its address is one of the member's
containers. Until the indexer knows a node's session, the node's own address decides
(several hosts may then hear of it; each one's ownership proof still decides).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sidecar.model import Origin
from sidecar.ownership import only_here


@dataclass(frozen=True)
class Member:
    """A live sidecar of the fleet, as its member node says."""

    id: str
    session: int
    hosts: frozenset[str]  # this host's addresses: interfaces, advertised, configured
    containers: frozenset[str]  # the addresses of the containers it serves


@dataclass(frozen=True)
class Facts:
    """What the indexer knows of one node: the host its name registers (None: not a
    registration it can read), its session (None: not looked up yet; 0: persistent), and its
    data version (instances change in place)."""

    host: str | None
    owner: int | None = None
    version: int = 0


class Members:
    """The live members, indexed for routing."""

    def __init__(self, members: Iterable[Member]) -> None:
        self.by_id = {m.id: m for m in members}
        self._by_session = {m.session: m.id for m in self.by_id.values()}
        self._by_host: dict[str, set[str]] = defaultdict(set)
        self._by_container: dict[str, set[str]] = defaultdict(set)
        for m in self.by_id.values():
            for address in m.hosts:
                self._by_host[address].add(m.id)
            for address in m.containers:
                self._by_container[address].add(m.id)

    def could_concern(self, host: str) -> bool:
        """Whether a node registering ``host`` might concern some member."""
        return host in self._by_host or host in self._by_container

    def ambiguous(self, host: str) -> bool:
        """Whether only its session can tell which member a node registering ``host``
        concerns: a container address (the same on many hosts, say 172.17.0.2), or an address
        several members share (per-application sidecars on one host)."""
        return host in self._by_container or len(self._by_host.get(host, ())) > 1

    def concerned(self, facts: Facts, origins: Mapping[int, frozenset[str]]) -> set[str]:
        """The members a node concerns."""
        if facts.host is None and facts.owner is None:
            return set()
        if facts.owner == 0:
            return set(self._by_container.get(facts.host or "", ()))
        if facts.owner is not None:
            member = self._by_session.get(facts.owner)
            if member is not None:
                return {member}
            origin = origins.get(facts.owner)
            if origin is not None:
                return set().union(*(self._at(address) for address in origin))
        return self._at(facts.host or "")

    def _at(self, address: str) -> set[str]:
        return set(self._by_host.get(address, ())) | set(self._by_container.get(address, ()))


def where_from(origin: Origin, here: str | None) -> frozenset[str]:
    """The addresses that say which host a session connects from, as every member reads
    them. A server tells a client on its own host by a loopback or link-local address, which
    means that host only to the one who asked: it stands for the server's host (the server's
    address as the indexer reached it), or, where the indexer reached the server by such an
    address too, for the indexer's own host (``here``; None: unknown). The address as told
    is kept too (a member may say it is its own): routing to one more member costs a read,
    and its proof decides."""
    if not only_here(origin.address):
        return frozenset({origin.address})
    host = origin.server if not only_here(origin.server) else here
    return frozenset({origin.address, *([host] if host else [])})


class Routes:
    """Per member, the paths that concern it and a digest of what concerns it there: a change
    of the digest is what tells the member to read the path again."""

    def __init__(self) -> None:
        self.work: dict[str, dict[str, str]] = defaultdict(dict)  # member -> path -> digest

    def reroute(
        self,
        path: str,
        facts: Mapping[str, Facts],
        members: Members,
        origins: Mapping[int, frozenset[str]],
    ) -> set[str]:
        """Route one path's nodes; returns the members whose work changed."""
        mine: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
        for name, fact in facts.items():
            for member in members.concerned(fact, origins):
                mine[member].append((name, fact.owner or 0, fact.version))
        changed = set()
        for member in set(mine) | {m for m, paths in self.work.items() if path in paths}:
            entries = mine.get(member)
            before = self.work[member].get(path)
            if entries:
                now = _digest(entries)
                if now != before:
                    self.work[member][path] = now
                    changed.add(member)
            elif before is not None:
                del self.work[member][path]
                changed.add(member)
        return changed

    def forget(self, member: str) -> None:
        self.work.pop(member, None)


def _digest(entries: list[tuple[str, int, int]]) -> str:
    text = "\n".join(f"{name}\t{owner:x}\t{version}" for name, owner, version in sorted(entries))
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
