"""This sidecar's part in the fleet (--fleet): its member node (what routes work to it), its
place in the election of the indexer (and the indexer itself when elected), and the work the
indexer publishes for it. A member watches two nodes: its work and the ballot before its own.
Driven by the loop thread, which hands it what changed (``FleetWork``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from sidecar.coordination.election import Election
from sidecar.coordination.membership import Membership
from sidecar.fleet.indexer import ELECTION, MEMBERS, WORK, FleetRegistry, Indexer, member_data
from sidecar.fleet.nodes import Problems, ballot_member, ballot_problem
from sidecar.fleet.work import Part, Paths, parse_part, part_path
from sidecar.model import RegistryNode
from sidecar.ops.metrics import FleetMetrics
from sidecar.report.events import Events


class FleetWork(Protocol):
    """What a pass has to do, as the fleet reads and marks it (the loop's ``Work``)."""

    full: bool  # everything again
    local: bool  # this host's paths (the periodic resync)
    roots: set[str]  # registry roots whose children changed
    indexed: set[str]  # registry paths changed, for the indexer
    fleet: set[str]  # fleet nodes changed (work, ballots, members)
    more: bool  # set: another pass at once


class RegistryRoots(Protocol):
    """The registry roots this sidecar serves (the loop's ``Roots``)."""

    def root_of(self, path: str) -> str | None: ...

    def holds_instances(self, path: str) -> bool: ...


class FleetError(Exception):
    """This sidecar cannot take its part in the fleet now (the message says why)."""


class FleetKeeper:
    """Membership, election and work for one member."""

    def __init__(
        self,
        registry: FleetRegistry,
        new_indexer: Callable[[Problems, Problems], Indexer],
        events: Events,
        metrics: FleetMetrics,
        roots: RegistryRoots,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``new_indexer(junk, unwritable)``: the indexer, once elected, reporting where
        these say."""
        self._registry = registry
        self._clock = clock
        self._roots = roots
        self._metrics = metrics
        self.member_id = ""  # the engine's id and the lease's name: one member per lease
        self.member_path = self.work_path = ""
        self._new_indexer = new_indexer
        self._events = events
        self.indexer: Indexer | None = None
        self._election = Election(registry, ELECTION, b"")  # this member's ballot
        self._membership = Membership(registry, "")
        self._before = ""  # the ballot this one waits behind
        self._before_member = ""  # the member node of that ballot's member
        self.junk = Problems(self._ignored, metrics.ignored.set)
        self.unwritable = Problems(self._not_written, metrics.unwritable.set)
        self.problem = ""  # why this sidecar is not a working member now ("": it is)
        self._work: Paths = {}  # path -> digest, child version; as read
        self._parts: dict[int, tuple[int, Part]] = {}  # parts 1..: as read, at which version
        self._deferred: set[str] = set()  # registry paths changed, indexed next pass

    def watched(self) -> frozenset[str]:
        """Fleet nodes whose changes this member acts on."""
        paths = {self.work_path, self._before, self._before_member} - {""}
        return frozenset(paths)

    def keep(
        self, member_id: str, session: int, hosts: set[str], containers: set[str],
        about: dict[str, object], work: FleetWork,
    ) -> set[str]:  # fmt: skip
        """Be a member, take part in the election, index if elected; returns the paths the
        indexer says concern this member and changed since last read (all on a full pass)."""
        if member_id != self.member_id:  # the first pass, or another scope (another lease)
            self.member_id = member_id
            self.member_path, self.work_path = f"{MEMBERS}/{member_id}", f"{WORK}/{member_id}"
            self._membership = Membership(self._registry, self.member_path)
            self._work, self._parts = {}, {}
            if self._election.ballot:  # the ballot names the member: another member, another ballot
                self._election.cancel()
                self.indexer = None
            self._election = Election(self._registry, ELECTION, member_id.encode())
            work.full = True
        problem = self._membership.keep(session, member_data(session, hosts, containers, **about))
        if problem:
            raise FleetError(f"{self.member_path}: {problem}")
        # A ballot lives as long as the session: joining again while it lives would queue a
        # second ballot behind the others, and the first would hold the election for nobody.
        check = work.full or work.local or ELECTION in work.fleet
        if not self._election.ballot or (check and not self._election.holds(session)):
            # A sidecar restarted within its session timeout resumes the session, and with it
            # the ballot its previous process held, which it keeps.
            self._election.join(session, lambda ballot: ballot_problem(ballot) is None)
            work.fleet.add(ELECTION)
        if ELECTION in work.fleet or work.fleet & {self._before, self._before_member} or work.full:
            self._elect(session)
        if self.indexer is not None:
            self.indexer.here = min(hosts, default=None)
            self._index_unless_own_work(work)
        self._count(work.full or work.local)
        told = WORK in work.fleet or any(
            p == self.work_path or p.startswith(self.work_path + "/") for p in work.fleet
        )
        if work.full or work.local or told:
            return self._read_work(everything=work.full)
        return set()

    @property
    def no_indexer(self) -> bool:
        """Whether this member knows of no indexer: it is none, and waits behind no ballot."""
        return bool(self.member_id) and self.indexer is None and not self._before

    def next_deadline(self) -> float:
        """When the fleet has something to do without being told (a work write to retry)."""
        return self.indexer.next_retry() if self.indexer is not None else float("inf")

    def _count(self, unserved_too: bool) -> None:
        indexer, m = self.indexer, self._metrics
        m.indexer.set(indexer is not None)
        m.members.set(len(indexer.members.by_id) if indexer else 0)
        m.units.set(indexer.units if indexer else 0)
        m.owned.set(indexer.units if indexer else 0)
        m.unowned.set(indexer.pending if indexer else 0)
        if unserved_too:
            m.unserved.clear()
            for host, count in (indexer.unserved() if indexer else {}).items():
                m.unserved.labels(host).set(count)

    def _elect(self, session: int) -> None:
        """Index if no ballot ahead of this member's counts, else wait behind the nearest one
        that does. A ballot counts when it has the form the sidecar gives it and the member
        it names holds its member node in the ballot's session: anything else anyone wrote
        there is ignored and reported once, and cannot stop the election."""
        standing = self._election.stand(
            self._counts, lambda ignored: self.junk.found("ballot", ignored)
        )
        if standing.before is not None:
            self._before = standing.before.path
            if standing.settled:
                self.indexer = None
            return  # not settled: ballots come and go faster than read, wait behind the last
        self._before = self._before_member = ""
        if self.indexer is None:
            self._events.info("fleet_indexer_elected", member=self.member_id,
                              session=f"0x{session:x}")  # fmt: skip
            self.indexer = self._new_indexer(self.junk, self.unwritable)
            self.indexer.rebuild()

    def _counts(self, ballot: RegistryNode) -> str | None:
        """Why a ballot ahead does not count (None: it does); the member node of one of the
        sidecar's form is watched."""
        problem = ballot_problem(ballot)
        if problem is None:
            self._before_member = f"{MEMBERS}/{ballot_member(ballot)}"
            if self._registry.owner_of(self._before_member) == ballot.owner:
                return None
            problem = "its member holds no member node in its session"
        return problem

    def _ignored(self, node: str, problem: str) -> None:
        self._events.warning("fleet_node_ignored", node=node, problem=problem)

    def _not_written(self, node: str, problem: str) -> None:
        self._events.warning("fleet_work_unwritable", node=node, problem=problem)

    def _index_unless_own_work(self, work: FleetWork) -> None:
        """Index what changed, unless this member's own work changed too and nothing but
        registry paths did: then this host's paths are planned first, and the changes wait
        for the next pass, which comes at once. In a storm those changes are mostly the
        fleet's own rewrites, and this host's rewrites would queue behind indexing them."""
        # A work node's data change is reported as its parent's.
        own = {WORK, self.work_path}
        routine = not (work.full or work.local or work.roots or work.fleet - own)
        if work.fleet & own and work.indexed and routine:
            self._deferred |= work.indexed
            work.indexed = set()
            work.more = True
            return
        work.indexed |= self._deferred
        self._deferred = set()
        self._index(work)

    def _index(self, work: FleetWork) -> None:
        indexer = self.indexer
        assert indexer is not None
        started = time.monotonic()
        if work.full:
            indexer.rebuild()
        else:
            # The periodic resync reads every member node again (a lost notification).
            members = {p for p in work.fleet if p == MEMBERS or p.startswith(MEMBERS + "/")}
            if members or work.local:
                indexer.read_members(None if work.local else members)
            indexer.roots_changed(work.roots)
            indexer.paths_changed(work.indexed)
            if work.local:
                indexer.sweep()
        looked_up = indexer.look_up()
        published = indexer.publish(self._clock())
        self._events.debug(
            "fleet_indexed", paths=len(work.indexed), looked_up=looked_up,
            published=published, seconds=round(time.monotonic() - started, 4),
        )  # fmt: skip
        if indexer.busy:
            work.more = True

    def _read_work(self, everything: bool) -> set[str]:
        """Read this member's work again: the paths whose digest changed since the last
        read (all of them: ``everything``), except those its own writes alone changed."""
        now = {p: entry for p, entry in self._read_parts().items() if self._registry_path(p)}
        before, self._work = self._work, now
        if everything:
            return set(now)
        changed = {p for p in set(now) | set(before) if _digest(now, p) != _digest(before, p)}
        # A path whose children this member's own writes alone moved since it read them needs
        # no second look (instances change in place, without moving the child version).
        return {
            p for p in changed
            if p not in now
            or not self._registry.moved_only_by_own_writes(p, now[p][1])
            or self._roots.holds_instances(p)
        }  # fmt: skip

    def _read_parts(self) -> Paths:
        """Every path the work nodes name: part 0 (read each time: it says how many parts
        there are), and of the others those whose version moved since read (watched)."""
        first = self._read_part(0)
        self._parts = {i: found for i, found in self._parts.items() if 0 < i < first.parts}
        paths = [part_path(WORK, self.member_id, i) for i in range(1, first.parts)]
        versions = self._registry.stats(paths) if paths else {}
        for i, path in enumerate(paths, start=1):
            version = versions.get(path)
            if version is None or self._parts.get(i, (-1, Part({})))[0] != version[1]:
                self._parts[i] = (version[1] if version else -1, self._read_part(i))
        found = dict(first.paths)
        for _, part in self._parts.values():
            found.update(part.paths)
        return found

    def _read_part(self, index: int) -> Part:
        path = part_path(WORK, self.member_id, index)
        node = self._registry.watch_node(path)
        try:
            part = parse_part(node.data if node else b"")
        except ValueError as exc:
            self.junk.add("work", path, str(exc))  # anyone can write there
            return Part({})
        self.junk.clear("work", path)
        return part

    def _registry_path(self, path: str) -> bool:
        """Whether a path the work names is one under this sidecar's roots (anything can be
        written into a work node)."""
        try:
            path.encode()
        except UnicodeEncodeError:
            return False
        return self._roots.root_of(path) is not None

    @property
    def paths(self) -> set[str]:
        """Every path the indexer says concerns this member."""
        return set(self._work)


def _digest(work: Paths, path: str) -> str | None:
    entry = work.get(path)
    return entry[0] if entry is not None else None
