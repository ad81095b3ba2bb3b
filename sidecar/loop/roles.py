"""The part this sidecar plays in every pass, chosen once in the wiring: watching the registry
paths of its host or app (the default), a fleet member (--fleet), an app's ZooKeeper proxy
(--proxy-listen), or an observer (plan, status). Each answers what differs between them;
the pass (reconcile.py) asks, and branches on none of them."""

from __future__ import annotations

import socket
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from sidecar.fleet.member import FleetKeeper
from sidecar.loop.apply import Results
from sidecar.loop.components import Components
from sidecar.loop.dirty import Work
from sidecar.loop.persistence import Persistence
from sidecar.loop.pick import local_paths, paths_to_read, refresh_before_reading
from sidecar.loop.retries import Whole
from sidecar.plan import Decision
from sidecar.proxy import InventoryMapper, ProxyServer
from sidecar.registry.outcomes import Interrupted


@dataclass(frozen=True)
class Picked:
    """The paths one pass reads, and each re-listed root's current paths (taken as known
    only once the pass has succeeded)."""

    paths: set[str]
    listed: dict[str, set[str]] = field(default_factory=dict)


class Role(ABC):
    """What differs between the ways a sidecar takes part in a pass: each role answers the
    abstract questions; the others have a default (the paths of its host or app are read,
    nothing runs besides the loop)."""

    def scope_decided(self, p: Components, address: str) -> None:
        """The scope of this pass is decided (``address``: the one advertised)."""
        return None

    @abstractmethod
    def hold(self, p: Components, session: int, work: Work, about: dict[str, str]) -> bool:
        """Hold the lease, or stand by (False: the pass ends here). ``about``: what the
        lease says of this sidecar."""

    def pick(
        self, p: Components, work: Work, session: int, address: str, not_ready: tuple[str, ...]
    ) -> Picked | None:
        """The registry paths this pass reads (None: none at all, not even the records): by
        default those of its host or app. ``not_ready``: why this sidecar is not ready, as the
        loop last published it."""
        refresh_before_reading(p, work)
        return Picked(*paths_to_read(p, work))

    @abstractmethod
    def plans_as(self, session: int) -> int | None:
        """The session the planner decides as (None: an observer's view)."""

    @abstractmethod
    def settled(
        self, p: Components, decisions: list[Decision], results: Results, session: int | None
    ) -> None:
        """A chunk's writes are done: keep what its decisions did."""

    @abstractmethod
    def full_pass_done(self, p: Components) -> None:
        """A full pass succeeded."""

    def next_deadline(self) -> float:
        """When this role has something to do without being told."""
        return float("inf")

    def not_ready(self) -> list[str]:
        """Why this role keeps the sidecar from being ready (empty: it does not), as of the
        pass just made."""
        return []

    def not_ready_now(self) -> list[str]:
        """Why what this role runs besides the loop keeps the sidecar from being ready, at
        once. Called from the ops threads."""
        return []

    def stop(self) -> None:
        """Stop what this role runs besides the loop (the loop is stopping)."""
        return None


class Watching(Role):
    """A sidecar per host or per app (the default): holds its lease, reads the paths that
    concern it, writes its rewrites and their records."""

    def __init__(self, persistence: Persistence) -> None:
        """``persistence``: the state file (the session to resume)."""
        self.persistence = persistence

    def plans_as(self, session: int) -> int | None:
        return session

    def settled(
        self, p: Components, decisions: list[Decision], results: Results, session: int | None
    ) -> None:
        p.memory.remember(decisions, results, session or 0, p.roots.is_mirror)
        p.memory.written(decisions, results)

    def full_pass_done(self, p: Components) -> None:
        if not p.memory.records_stale:
            self.persistence.recorded()  # a restart restores from the records read now

    def hold(self, p: Components, session: int, work: Work, about: dict[str, str]) -> bool:
        """Hold this sidecar's lease in its session (False: standing by); a per-app sidecar
        that has held it long enough takes its container's rewrites over from the per-host
        one."""
        if self.persistence.note_session(session, p.registry.session_password):
            p.events.connection("session", "resumed", session=f"0x{session:x}")
        if not p.lease.hold(session, work, about, p.observer.session_gone, p.retries):
            return False
        if p.lease.settle_if_due():
            work.local = work.replan = True
        return True


class Proxying(Watching):
    """An app's ZooKeeper proxy (--proxy-listen): the app's own requests are rewritten in
    flight from a mapping the pass keeps current. Holds the lease; reads and writes no
    registry path, and so keeps no records."""

    def __init__(
        self, persistence: Persistence, mapper: InventoryMapper, server: ProxyServer
    ) -> None:
        """``server``: already listening (the app may start before the loop), following
        ``mapper``."""
        super().__init__(persistence)
        self.mapper = mapper
        self.server = server

    def scope_decided(self, p: Components, address: str) -> None:
        scope = p.lease.scope
        app = [c for c in p.inventory.index.by_id.values() if scope.excludes(c.id) is None]
        self.mapper.update(app, address)

    def hold(self, p: Components, session: int, work: Work, about: dict[str, str]) -> bool:
        return super().hold(p, session, work, about | {"proxy": "true"})

    def pick(
        self, p: Components, work: Work, session: int, address: str, not_ready: tuple[str, ...]
    ) -> Picked | None:
        return None  # the app writes its own registrations, renamed by the proxy

    def full_pass_done(self, p: Components) -> None:
        return None

    def not_ready_now(self) -> list[str]:
        return self.server.not_ready()

    def stop(self) -> None:
        self.server.stop()  # its capture rules stay: the app waits for the next sidecar


class InFleet(Watching):
    """A member of a fleet (--fleet): the elected indexer watches the registry for every
    member and tells each the paths that concern its host; this member reads those and its
    own, and indexes when elected."""

    def __init__(self, persistence: Persistence, fleet: FleetKeeper) -> None:
        super().__init__(persistence)
        self.fleet = fleet
        self._counts: tuple[int, int] | None = None  # managed, refused: as the fleet was told

    def pick(
        self, p: Components, work: Work, session: int, address: str, not_ready: tuple[str, ...]
    ) -> Picked | None:
        refresh_before_reading(p, work)
        if work.full or work.local or self._counts is None:
            self._counts = p.applier.totals()  # counts change often: said every resync only
        about = {
            "host": socket.gethostname(), "scope": p.lease.scope.describe(),
            "proxy": False,  # a proxy takes no part in a fleet: its app writes its own
            "not_ready": list(not_ready), "managed": self._counts[0],
            "refused": self._counts[1], "advertise_host": address,
        }  # fmt: skip
        return Picked(self._paths(p, session, work, about))

    def _paths(self, p: Components, session: int, work: Work, about: dict[str, object]) -> set[str]:
        """The paths the indexer says concern this host (and changed), plus this host's own;
        registry changes are the indexer's (this sidecar's, if elected). ``about``: what the
        member node says besides the addresses that route work here."""
        scope = p.lease.scope
        containers = {
            address
            for c in p.inventory.index.by_id.values()
            if scope.excludes(c.id) is None
            for address in c.addresses
        }
        hosts = p.observer.host_addresses(p.inventory.interface_addresses)
        hosts |= {str(about["advertise_host"])} if about.get("advertise_host") else set()
        member = f"{p.engine_id}+{scope.lease_name}"
        paths = work.paths | self._keep(p, member, session, hosts, containers, about, work)
        if work.full or work.local:
            paths |= local_paths(p, work, set())
        return paths

    def _keep(
        self, p: Components, member: str, session: int, hosts: set[str], containers: set[str],
        about: dict[str, object], work: Work,
    ) -> set[str]:  # fmt: skip
        """This member's part in the fleet, kept apart: whatever fails there (a node it may
        not write, anything) is reported and tried again later, and the pass goes on with
        this host's own paths."""
        fleet = self.fleet
        try:
            told = fleet.keep(member, session, hosts, containers, about, work)
        except Interrupted:
            raise
        except Exception as exc:
            fleet.problem = f"{type(exc).__name__} {exc}".strip()
            p.events.connection("fleet", "failed", problem=fleet.problem)
            p.retries.schedule(Whole.FLEET)
            return set()
        if fleet.problem:
            fleet.problem = ""
            p.events.recovered("fleet")
        p.retries.succeeded(Whole.FLEET)
        return told

    def next_deadline(self) -> float:
        return self.fleet.next_deadline()

    def not_ready(self) -> list[str]:
        if self.fleet.problem:
            return [f"not a working member of the fleet: {self.fleet.problem}"]
        if self.fleet.no_indexer:
            return ["the fleet has no indexer: no ballot ahead counts, none is its own"]
        return []


class Observing(Role):
    """``plan`` and ``status``: decides as the settled holder of its scope would, holds no
    lease, writes nothing (its registry refuses writes), and collects its decisions."""

    def __init__(self) -> None:
        self.decided: list[Decision] = []

    def hold(self, p: Components, session: int, work: Work, about: dict[str, str]) -> bool:
        p.lease.observe()
        return True

    def plans_as(self, session: int) -> int | None:
        return None

    def settled(
        self, p: Components, decisions: list[Decision], results: Results, session: int | None
    ) -> None:
        self.decided += decisions

    def full_pass_done(self, p: Components) -> None:
        return None
