"""One reconcile pass over the dirty work: sources' reports absorbed, containers refreshed,
scope and lease settled, then observe -> plan -> apply a chunk of paths at a time.

Runs on the loop thread only; every component it drives is owned by that thread.
"""

from __future__ import annotations

import os
import socket
import time
from collections import Counter
from collections.abc import Callable

from sidecar.fleet.indexer import ELECTION, WORK
from sidecar.logs import Progress
from sidecar.loop.apply import Results
from sidecar.loop.components import Components
from sidecar.loop.dirty import Work
from sidecar.loop.observe import Observation
from sidecar.loop.pick import all_paths
from sidecar.loop.retries import Whole
from sidecar.loop.roles import Role
from sidecar.model import Connection
from sidecar.plan import Decision, Identity, plan_path
from sidecar.registry.outcomes import Interrupted
from sidecar.sources.address import AdvertiseHost
from sidecar.sources.docker import DockerUnavailable

# Paths read and planned at a time: bounds memory on large registries (two chunks are held
# at once, one planned while the other's writes are in flight: the peak of a cold start on
# 100,000 nodes in 20,000 paths is 86 MB with 1,000, 95 MB with 2,000; python -m bench).
CHUNK = 1000
SCOPED_CHUNK = 20  # an event's paths: small chunks start writing sooner


class Reconciler:
    """Runs passes, in the role the wiring chose; remembers between them only what its components
    and its role hold."""

    def __init__(self, components: Components, role: Role, address: AdvertiseHost | None) -> None:
        self.components = components
        self.role = role
        self.address = address
        self.reconciled_once = False
        self.unreadable: set[str] = set()  # paths the credentials do not allow reading
        self._full_pass_began = float("-inf")
        self._disconnected_at = float("-inf")
        self._plan_failed: set[str] = set()  # paths to plan again later
        # What passes that could not run (no connection) or failed were to read: read once
        # connected again, or after a backoff.
        self._carried = Work()
        self.carried_since: float | None = None
        self.progressed: Callable[[], None] = lambda: None  # the loop's liveness, per chunk
        self.not_ready: tuple[str, ...] = ("starting",)  # as the loop last published it

    # -- what the sources reported ----------------------------------------------------------

    def absorb(self, work: Work) -> None:
        """Log and act on the sources' reports: connection changes, Docker's event stream,
        a new advertised address; and add the retries that are due."""
        p = self.components
        work.more = False  # this is the pass that was asked for; this one may ask for another
        for state, at in work.connection:
            connected = state in (Connection.CONNECTED, Connection.RESUMED)
            session = f"0x{p.registry.session_id:x}" if connected else None
            p.events.connection("zookeeper", state.value, session=session)
            p.metrics.connected.labels("zookeeper").set(connected)
            if not connected:
                self._disconnected_at = at
                continue
            # Back: what waited for the connection is done now, and what failed with it.
            work.carry(self._carried)
            self._carried = Work()
            p.retries.hurry()
            if state is Connection.CONNECTED and self._full_pass_began <= self._disconnected_at:
                # A new session has no watches: read everything, unless a full pass began on
                # this connection. A resumed one got its watches back (what changed fires).
                work.full = work.lease = True
        for problem in work.docker:
            p.inventory.docker_event(problem)
            if problem:
                p.metrics.connected.labels("docker").set(0)
        if work.address_problem:
            # The last address known stays advertised: a metadata service blip changes nothing.
            p.events.connection("advertise_address", "unavailable", problem=work.address_problem)
        if work.new_address is not None:
            self._take_address(work.new_address, work)
        for key in p.retries.take_due():
            if key is Whole.CARRIED:
                work.carry(self._carried)
                self._carried = Work()
            else:
                _add(work, key, p.roots.all)
        work.paths |= p.index.paths_of(work.addresses)

    def _take_address(self, found: AdvertiseHost, work: Work) -> None:
        """Adopt a newly found advertised address; a change re-points every managed
        registration (each in one transaction) and is logged once, here."""
        before, self.address = self.address, found
        if before is None:
            self.components.events.info("address_found", address=found.address, source=found.source)
            work.full = True
        elif before.address != found.address:
            self.components.events.info(
                "address_changed", before=before.address, address=found.address,
                source=found.source,
            )  # fmt: skip
            work.local = work.replan = True

    # -- one pass ---------------------------------------------------------------------------

    def run_pass(self, work: Work) -> None:
        """One reconcile pass over the dirty work (absorb it first)."""
        p = self.components
        p.observer.began()
        if self.address is None:
            return  # everything is read once an address is found
        if not self._refresh_containers(work):
            return
        has_engine = p.inventory.engine is not None
        containers = list(p.inventory.containers.values()) if has_engine else None
        if not p.lease.decide_scope(containers, p.inventory.interface_addresses, work):
            return
        self.role.scope_decided(p, self.address.address)
        if p.roots.use_mirrors_if_asked(p.inventory.index.by_id.values(), p.lease.scope):
            p.events.info("mirrors_in_use", reason="a container's label asks for mirror mode")
            work.full = True
        if not p.registry.connected:
            self._carry(work)  # done once connected again
            return
        if work.full:
            self._full_pass_began = time.monotonic()
        started = time.monotonic()
        try:
            summary, count = self._reconcile_work(work)
        except Interrupted:
            raise
        except Exception as exc:  # connection loss, no permission: try these scopes again
            p.events.connection("zookeeper", "pass_failed", problem=f"{type(exc).__name__} {exc}")
            self._requeue(work)
            return
        if summary is None:
            return
        p.events.recovered("zookeeper")
        p.retries.succeeded(Whole.CARRIED)
        if not self._carried:
            self.carried_since = None
        for root in work.roots:
            p.retries.succeeded(root)
        if work.full:
            p.retries.succeeded(Whole.EVERYTHING)
        self._finish_pass(work, summary, count, time.monotonic() - started)

    def _refresh_containers(self, work: Work) -> bool:
        p = self.components
        try:
            refreshed = p.inventory.refresh(
                work.all_containers, work.containers, work.static, work.nat
            )
        except DockerUnavailable:
            p.retries.schedule(Whole.CONTAINERS)
            self._requeue(work)
            return False
        if refreshed is None:
            return False
        if refreshed.listed:
            p.retries.succeeded(Whole.CONTAINERS)
        if p.inventory.engine is not None:
            p.metrics.connected.labels("docker").set(1)
        work.paths |= p.index.paths_of(refreshed.keys)
        work.full |= refreshed.everything
        return True

    def _reconcile_work(self, work: Work) -> tuple[Counter[str] | None, int]:
        """The lease, then the paths this work concerns; None while standing by."""
        p = self.components
        assert self.address is not None
        session = p.registry.session_id
        if not self.role.hold(p, session, work, self._about()):
            return None, 0
        if work.full or work.local:
            p.acl_check.check()  # once the lease (and its parents) exists
        picked = self.role.pick(p, work, session, self.address.address, self.not_ready)
        if picked is None:  # this role reads no registry path: nothing to plan or write
            return Counter(), 0
        bulk = work.full or work.local
        summary = self._reconcile(sorted(picked.paths), self.role.plans_as(session), bulk)
        denied = p.registry.take_denied()
        self.unreadable |= denied
        p.events.not_readable(denied)
        for gone in p.index.commit(picked.listed):
            p.memory.forget(gone)
            p.applier.forget([gone])
        return summary, len(picked.paths)

    def all_paths(self) -> list[str]:
        """Every path to plan under every root (plan and status read them all)."""
        return all_paths(self.components)

    def _about(self) -> dict[str, str]:
        """What this sidecar's lease says about it."""
        assert self.address is not None
        return {"host": socket.gethostname(), "pid": str(os.getpid()),
                "advertise_host": self.address.address,
                "advertise_source": self.address.source}  # fmt: skip

    def _finish_pass(self, work: Work, summary: Counter[str], count: int, seconds: float) -> None:
        p = self.components
        p.events.debug("pass_done", full=work.full, local=work.local, paths=count,
                       seconds=round(seconds, 4))  # fmt: skip
        p.metrics.reconciled(seconds, work.full)
        self.reconciled_once |= work.full
        if work.full:
            self.role.full_pass_done(p)
        if p.prober is not None:
            p.prober.watch(p.memory.endpoints())
        if work.full or work.local:
            p.events.resync(summary, seconds, "full" if work.full else "local")

    # -- observe -> plan -> apply, a chunk at a time -----------------------------------------

    def _reconcile(self, paths: list[str], session: int | None, bulk: bool) -> Counter[str]:
        """Read, plan and write ``paths`` a chunk at a time (memory stays bounded, a stop is
        honoured between chunks); return how many decisions of each kind were made. One
        chunk's writes are in flight while the next chunk is read and planned. ``bulk``
        (a resync): large chunks, and progress lines."""
        p = self.components
        summary: Counter[str] = Counter()
        progress = Progress(p.events.progress if bulk else None)
        size = CHUNK if bulk else SCOPED_CHUNK
        in_flight: tuple[list[str], list[Decision], Callable[[], Results]] | None = None
        for start in range(0, len(paths), size):
            if p.stopping():
                raise Interrupted
            chunk = paths[start : start + size]
            decisions = self.plan(chunk, session)
            p.memory.intend(decisions)
            pending = p.applier.start(decisions)
            if in_flight is not None:
                self._settle(*in_flight, session, summary)
            in_flight = (chunk, decisions, pending)
            progress("reconciling paths", min(start + size, len(paths)), len(paths))
            self.progressed()
        if in_flight is not None:
            self._settle(*in_flight, session, summary)
        return summary

    def plan(
        self, paths: list[str], session: int | None, me: Identity | None = None
    ) -> list[Decision]:
        """Observe ``paths`` and decide every node in them (as ``me``, by default this
        sidecar). A path whose planning fails is reported with its traceback and tried again
        later: it never holds back the others."""
        p = self.components
        seen = self._observe(paths, session)
        for parent, claims in seen.claims.items():
            p.memory.set_claims(parent, claims)
        ownership = seen.ownership(p.memory.claims)
        me = me or self.identity(session)
        decisions: list[Decision] = []
        for view in seen.views:
            try:
                decisions += plan_path(view, p.inventory.index, me, ownership, p.memory.recorded)
            except Exception:
                p.events.exception("plan_failed", node=view.parent)
                self._plan_failed.add(view.parent)
        return decisions

    def _observe(self, paths: list[str], session: int | None) -> Observation:
        """Read ``paths`` and who connects from where; a node owned by a session no peer is
        known to hold has the peers read again: before taking over a node, know whether its
        owner is alive (the scope, and so the identity planning, carries them)."""
        p = self.components
        known = {session or 0, *p.lease.scope.peers}
        seen = p.observer.observe(
            paths, p.memory, p.inventory.index, p.inventory.interface_addresses,
            {self.address.address} if self.address else set(), known, p.engine_id,
        )  # fmt: skip
        if seen.strangers:
            p.lease.read_peers()
        return seen

    def identity(self, session: int | None) -> Identity:
        """Who plans now: the session, the engine, the address and its source, the scope."""
        assert self.address is not None
        p = self.components
        return Identity(session, p.engine_id, self.address.address, p.mode, p.lease.scope,
                        self.address.source)  # fmt: skip

    def _settle(
        self,
        chunk: list[str],
        decisions: list[Decision],
        pending: Callable[[], Results],
        session: int | None,
        summary: Counter[str],
    ) -> None:
        """Wait for a chunk's writes, then remember and count what its decisions did."""
        p = self.components
        results = pending()
        self._index_paths(decisions)
        failed = {d.node.parent for d, r in results.items() if r.retry}
        failed |= self._plan_failed.intersection(chunk)
        self._plan_failed.difference_update(chunk)
        again = failed | {d.node.parent for d in decisions if d.provisional}
        restless = again | {d.node.parent for d in decisions if not d.settled}
        for path in chunk:
            if path in again:
                p.retries.schedule(path, failed=path in failed)
            else:
                p.retries.succeeded(path)
            mirror = p.roots.mirror_of(path)
            p.index.planned(path, path not in restless and mirror not in restless)
        self.role.settled(p, decisions, results, session)
        summary.update(str(d.action) for d in decisions)
        summary["other_hosts"] += sum(1 for d in decisions if not d.local)

    def _index_paths(self, decisions: list[Decision]) -> None:
        """Remember which addresses and containers each path mentions: those that are or may
        become this host's (a local container's, or in one of its Docker networks). Other
        addresses can never be this host's containers; leaving them out keeps memory flat."""
        p = self.components
        containers = p.inventory.index
        local = containers.addresses()
        keys_by_path: dict[str, set[str]] = {}
        names_by_path: dict[str, set[str]] = {}
        for d in decisions:
            keys = keys_by_path.setdefault(d.node.parent, set())
            names_by_path.setdefault(d.node.parent, set()).add(d.node.name)
            host = d.original.host if d.original else None
            if host and (host in local or containers.in_docker_network(host)):
                keys.add(host)
            if d.container:
                keys.add(d.container.id)
        for path, keys in keys_by_path.items():
            p.index.index(path, keys)
            p.events.forget_missing(path, names_by_path[path])

    def _requeue(self, work: Work) -> None:
        """Read these scopes again later (at once if the connection comes back first)."""
        scopes = Work()
        scopes.carry(work)
        if scopes:  # a pass over nothing that failed (a retry not yet due) adds no delay
            self._carry(scopes)
            self.components.retries.schedule(Whole.CARRIED)

    def _carry(self, work: Work) -> None:
        self._carried.carry(work)
        if self.carried_since is None and self._carried:
            self.carried_since = time.monotonic()

    def backlog_since(self) -> float | None:
        """Since when the oldest work put off (carried, or failed and to be retried) has
        waited."""
        since = [t for t in (self.carried_since, self.components.retries.failing_since()) if t]
        return min(since, default=None)


def _add(work: Work, key: Whole | str, roots: tuple[str, ...]) -> None:
    """Put a scope that is due again into the work."""
    if key is Whole.EVERYTHING:
        work.full = True
    elif key is Whole.CONTAINERS:
        work.all_containers = True
    elif key is Whole.LEASE:
        work.lease = True
    elif key is Whole.FLEET:
        work.fleet |= {ELECTION, WORK}
    elif isinstance(key, Whole):
        raise AssertionError(f"{key} is absorbed on its own")
    elif key in roots:
        work.roots.add(key)
    else:
        work.paths.add(key)
