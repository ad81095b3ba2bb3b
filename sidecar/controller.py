"""The reconcile loop: sources mark scopes dirty, one thread re-reads them, plans and writes.

Watch and event callbacks only record a scope (a providers path, a root, a container) and
wake the loop. The loop re-reads exactly those scopes, so a missed or repeated event costs
nothing. A full resync at start and after each reconnect, and a periodic sweep spread over
_SWEEP_RESYNCS resyncs, catch anything else.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from sidecar.config import Settings
from sidecar.mapping import ContainerIndex
from sidecar.model import STATIC_ID, Container, Delete, Endpoint, RegistryNode, Transaction
from sidecar.ops.metrics import Metrics
from sidecar.ops.server import OpsServer
from sidecar.ownership import marker_from_state
from sidecar.plan import Action, Decision, Remembered
from sidecar.progress import Progress
from sidecar.reconciler import Reconciler
from sidecar.registry.zookeeper import (
    Connection,
    Interrupted,
    Outcome,
    Writes,
    ZooKeeperRegistry,
)
from sidecar.report import DecisionLog
from sidecar.scope import DeploymentScope, choose, lease_data
from sidecar.sources import address as advertise
from sidecar.sources import static as static_source
from sidecar.sources.address import AddressWatch
from sidecar.sources.docker import DockerEngine, DockerUnavailable, DockerWatch
from sidecar.sources.probe import Prober
from sidecar.state import State, StateFile
from sidecar.syntax import servers

# Retry keys besides paths: the whole registry, the container list, the lease.
_EVERYTHING = "*"
_CONTAINERS = "containers"
_LEASE = "lease"
_RETRY_FIRST = 0.05
_RETRY_MAX = 5.0
# Paths read and planned at a time: bounds memory on large registries.
_CHUNK = 2000
_SCOPED_CHUNK = 20  # an event's paths: small chunks start writing sooner
_SAVE_EVERY = 2.0
# How long a per-app sidecar holds its lease before it takes its container's rewrites over
# from the per-host sidecar: time for that one to see the lease and let go.
_SETTLE = 2.0

# Each periodic resync re-reads this host's paths and checks one slice of all the others (one
# `exists` each: did its children move since the last read?), re-reading those that did. The
# whole registry is checked once every this many resyncs, and no pass re-reads it all at once
# (at 100,000 nodes that would hold every event back by seconds).
_SWEEP_RESYNCS = 60


@dataclass
class Work:
    """Scopes to re-read in the next pass."""

    full: bool = False
    local: bool = False  # the paths that concern this host's containers and rewrites
    address: bool = False  # the advertised address changed
    all_containers: bool = False
    lease: bool = False
    roots: set[str] = field(default_factory=set)
    paths: set[str] = field(default_factory=set)
    containers: set[str] = field(default_factory=set)
    addresses: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return (
            self.full
            or self.local
            or self.address
            or self.all_containers
            or self.lease
            or bool(self.roots or self.paths or self.containers or self.addresses)
        )


class DirtyScopes:
    """Thread-safe collection of dirty scopes; marking never blocks for long."""

    def __init__(self, roots: tuple[str, ...], source_of: Callable[[str], str | None]) -> None:
        self._roots = set(roots)
        self._source_of = source_of
        self.lease_paths: set[str] = set()  # the lease parent (children) and our own lease
        self._work = Work()
        self._stopping = False
        self._wake = threading.Condition()

    def path_changed(self, path: str) -> None:
        with self._wake:
            if path in self.lease_paths:
                self._work.lease = True
            elif path in self._roots:
                self._work.roots.add(path)
            else:
                self._work.paths.add(self._source_of(path) or path)
            self._wake.notify()

    def container_changed(self, container_id: str) -> None:
        with self._wake:
            self._work.containers.add(container_id)
            self._wake.notify()

    def address_changed(self) -> None:
        with self._wake:
            self._work.address = True
            self._wake.notify()

    def endpoint_changed(self, endpoint: Endpoint) -> None:
        with self._wake:
            self._work.addresses.add(endpoint.host)
            self._wake.notify()

    def everything(self, containers_too: bool = True) -> None:
        with self._wake:
            self._work.full = True
            self._work.lease = True
            self._work.all_containers |= containers_too
            self._wake.notify()

    def periodic(self) -> None:
        """The periodic resync: containers, every path that concerns them, the roots' listings
        and the next slice of the sweep over all paths."""
        with self._wake:
            self._work.local = True
            self._work.roots |= self._roots
            self._work.all_containers = True
            self._work.lease = True
            self._wake.notify()

    def wake(self) -> None:
        with self._wake:
            self._wake.notify()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()

    def take(self, timeout: float) -> Work:
        """Wait up to ``timeout`` for work (or a stop), then hand over everything marked."""
        with self._wake:
            if not self._work and not self._stopping:
                self._wake.wait(timeout)
            work, self._work = self._work, Work()
            return work


class Controller:
    """Runs the sidecar: keeps every provider registration under the roots reconciled."""

    def __init__(
        self,
        settings: Settings,
        address: advertise.AdvertiseHost | None,
        log: DecisionLog,
        environ: Mapping[str, str],
    ) -> None:
        """``address`` None: no configured source answered yet; the sidecar waits for one."""
        self._settings = settings
        self._roots = (*settings.root, *settings.services_root)
        self._address = address
        self._address_lock = threading.Lock()
        self._new_address: advertise.AdvertiseHost | None = None
        self._address_problem = "" if address else "no configured source answered yet"
        self._log = log
        self._stopping = threading.Event()
        self._state_file = StateFile(settings.state_file) if settings.state_file else None
        self._state = State()
        if self._state_file is not None:
            try:
                self._state_file.lock()
            except OSError as exc:
                log.connection("state file", "unusable", problem=f"{exc}; a restart will not "
                               "resume the ZooKeeper session")  # fmt: skip
                self._state_file = None
            else:
                self._state, problem = self._state_file.load()
                if problem:
                    log.connection("state file", "unreadable", problem=problem)
        # The session a restart tried to resume: its nodes and lease are ours to take over.
        self._earlier_session = self._state.session_id
        resume = (self._state.session_id, self._state.password) if self._state.session_id else None
        self._reconciler: Reconciler | None = None
        self._dirty = dirty = DirtyScopes(self._roots, self._source_of)
        self._registry = ZooKeeperRegistry(
            settings.zookeeper,
            settings.session_timeout,
            on_change=dirty.path_changed,
            on_connection=self._connection_changed,
            resume=resume,
            stopping=self._stopping,
            digest=settings.zookeeper_auth.get_secret_value() if settings.zookeeper_auth else None,
        )
        self._engine = (
            DockerEngine(settings.docker_url, environ) if settings.docker_url != "none" else None
        )
        self._scope_decided = False
        self._scope_waiting = ""
        self._settle_at: float | None = None
        self._lease_path = ""
        self._static = static_source.configured(settings.static_file, settings.static_ports)
        self._static_watch = (
            static_source.StaticWatch(
                settings.static_file, lambda: dirty.container_changed(STATIC_ID)
            )
            if settings.static_file is not None
            else None
        )
        self._containers: dict[str, Container] = {}
        self._subnets: list[str] = []
        self._indexed: tuple[object, ...] = ()
        self._gateways: list[str] = []
        self._holding_lease = False
        self._docker_subscribed = threading.Event()
        self._docker_fresh = False
        self._known_paths: dict[str, set[str]] = {root: set() for root in self._roots}
        self._swept_up_to = 0  # where the next slice of the periodic sweep begins
        # Which providers paths mention an address or container, so a container event
        # re-reads only those paths.
        self._paths_by_key: dict[str, set[str]] = defaultdict(set)
        self._keys_by_path: dict[str, set[str]] = {}
        self._retry: dict[str, tuple[float, float]] = {}
        self._watch = (
            DockerWatch(
                self._engine,
                on_container=dirty.container_changed,
                on_subscribed=self._docker_subscribed_now,
                on_lost=self._docker_lost,
            )
            if self._engine is not None
            else None
        )
        self.metrics = Metrics()
        self._ops: OpsServer | None = None
        if settings.listen:
            [(host, port)] = servers(settings.listen)
            self._ops = OpsServer(host.strip("[]"), port, self.metrics, self.not_ready)
        self._reconciled_once = False
        # When a full pass last began while connected, and when the connection last dropped.
        self._full_pass_began = float("-inf")
        self._disconnected_at = float("-inf")
        self._saved_at = float("-inf")
        self._save_pending = False
        self._counted: dict[str, tuple[int, int]] = {}  # path -> (managed, refused)
        probing = settings.probe_seconds > 0
        self._prober = Prober(settings.probe_seconds, dirty.endpoint_changed) if probing else None
        self._address_watch = (
            AddressWatch(settings, environ, address, self._address_found, self._address_lost)
            if address is None or advertise.changes_over_time(settings)
            else None
        )

    # -- callbacks from the sources: record and return --------------------------------------

    def _connection_changed(self, state: Connection) -> None:
        """ZooKeeper state listener: after any reconnect, watches are gone (kazoo drops them
        with the connection); read everything, unless a full pass already began on this
        connection (the client says connected a moment before this listener runs)."""
        session = f"0x{self._registry.session_id:x}" if state is Connection.CONNECTED else None
        self._log.connection("zookeeper", state.value, session=session)
        self.metrics.connected.labels("zookeeper").set(state is Connection.CONNECTED)
        if state is not Connection.CONNECTED:
            self._disconnected_at = time.monotonic()
        elif self._full_pass_began <= self._disconnected_at:
            self._dirty.everything(containers_too=False)

    def _docker_subscribed_now(self) -> None:
        self._docker_subscribed.set()
        self._dirty.everything()

    def _docker_lost(self, problem: str) -> None:
        self._docker_subscribed.clear()
        self.metrics.connected.labels("docker").set(0)
        self._log.connection("docker", "lost", problem=problem)
        self._dirty.wake()

    def _address_found(self, found: advertise.AdvertiseHost) -> None:
        with self._address_lock:
            self._new_address = found
        self._dirty.address_changed()

    def _address_lost(self, problem: str) -> None:
        # The last address known stays advertised: a metadata service blip changes nothing.
        self._log.connection("advertise address", "unavailable", problem=problem)

    def _source_of(self, path: str) -> str | None:
        return self._reconciler.source_of(path) if self._reconciler else None

    def not_ready(self) -> list[str]:
        """Why the sidecar is not ready (empty when it is): for /readyz."""
        reasons = []
        if not self._registry.connected:
            reasons.append("not connected to ZooKeeper")
        if self._engine is not None and not (
            self._docker_subscribed.is_set() and self._docker_fresh
        ):
            reasons.append("Docker Engine not reachable")
        if self._address is None:
            reasons.append(f"no advertised address: {self._address_problem}")
        if self._scope_waiting:
            reasons.append(f"per-app sidecar waiting: {self._scope_waiting}")
        if not self._holding_lease:
            reasons.append("not holding its lease (starting, or standing by)")
        elif not self._reconciled_once:
            reasons.append("first reconcile not done")
        return reasons

    # -- the loop ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to return soon: requests in flight are abandoned."""
        self._stopping.set()
        self._dirty.stop()

    def run(self) -> None:
        """Connect, then reconcile until stop() is called."""
        stop = self._stopping
        self._log.connection(
            "zookeeper", "connecting",
            resuming=f"0x{self._earlier_session:x}" if self._earlier_session else None,
        )  # fmt: skip
        if self._ops is not None:
            self._ops.start()
            self._log.info("operations listener", address=f"{self._ops.host}:{self._ops.port}")
        self._registry.connect_in_background()
        try:
            engine_id = self._wait_for_engine_id(stop)
            if stop.is_set():
                return
            self._reconciler = reconciler = Reconciler(
                self._settings, self._registry, "", engine_id
            )
            if self._address is not None:
                reconciler.set_address(self._address.address, self._address.source)
            if self._state.engine == engine_id:
                for path, (data, saved) in self._state.managed.items():
                    parent, _, name = path.rpartition("/")
                    marker = marker_from_state(saved)
                    if marker is not None:
                        node = RegistryNode(parent, name, data, 0, 0)
                        reconciler.managed.setdefault(parent, {})[name] = Remembered(node, marker)
            self._dirty.lease_paths = {reconciler.lease_parent}
            for source in (self._watch, self._static_watch, self._address_watch):
                if source is not None:
                    source.start()
            if self._watch is None:
                self._dirty.everything()  # no Docker subscription to wait for
            if self._prober is not None:
                self._prober.start()
            self._loop(reconciler)
        finally:
            self._shut_down()

    def _loop(self, reconciler: Reconciler) -> None:
        next_resync = time.monotonic() + self._settings.resync_seconds
        while not self._stopping.is_set():
            now = time.monotonic()
            if now >= next_resync:
                self._dirty.periodic()
                next_resync = now + self._settings.resync_seconds
            work = self._dirty.take(timeout=self._wait_time(next_resync))
            if self._stopping.is_set():
                return
            if self._save_pending:
                self._save_state()
            try:
                self._pass(reconciler, work)
            except Interrupted:
                return

    def _shut_down(self) -> None:
        """Release everything; each step on its own, so one failure skips no other."""
        sources = (self._watch, self._static_watch, self._address_watch)
        steps: list[Callable[[], None]] = [s.stop for s in sources if s is not None]
        if self._save_pending:
            steps.append(lambda: self._save_state(now=True))
        if self._engine is not None:
            steps.append(self._engine.close)
        if self._prober is not None:
            steps.append(self._prober.stop)
        if self._ops is not None:
            steps.append(self._ops.stop)
        if self._settings.close_session_on_exit:
            steps += [self._registry.close, self._forget_session]
        for step in steps:
            try:
                step()
            except Exception as exc:  # shutting down anyway: report and go on
                self._log.connection("shutdown", "step failed", problem=f"{step}: {exc}")

    def _forget_session(self) -> None:
        self._state.session_id, self._state.password = 0, b""
        self._save_state(now=True)

    def _wait_time(self, next_resync: float) -> float:
        deadlines = [next_resync, *(at for at, _ in self._retry.values())]
        if self._settle_at is not None:
            deadlines.append(self._settle_at)
        if self._save_pending:
            deadlines.append(self._saved_at + _SAVE_EVERY)
        return max(0.0, min(deadlines) - time.monotonic())

    def _wait_for_engine_id(self, stop: threading.Event) -> str:
        """The identity this sidecar's markers and lease carry: the Docker engine's, or with
        no Docker, this host's (a pod's) name."""
        if self._engine is None:
            return static_source.identity()
        delay = _RETRY_FIRST
        while not stop.is_set():
            try:
                return self._engine.engine_id()
            except DockerUnavailable as exc:
                self._log.connection("docker", "unavailable", problem=str(exc))
                stop.wait(delay)
                delay = min(delay * 2, _RETRY_MAX)
        return ""

    def _pass(self, reconciler: Reconciler, work: Work) -> None:
        """One reconcile pass over the dirty scopes."""
        self._add_due_retries(work)
        work.paths |= {p for host in work.addresses for p in self._paths_by_key.get(host, ())}
        self._take_address(reconciler, work)
        if self._address is None:
            return  # everything is read once an address is found
        if not self._refresh_containers(reconciler, work):
            return
        if not self._decide_scope(reconciler, work):
            return
        if reconciler.use_mirrors_if_asked():
            self._log.info("mirror paths now read", reason="a container's label asks for mirror")
            work.full = True
        if not self._registry.connected:
            return  # the reconnect marks everything dirty
        if work.full:
            self._full_pass_began = time.monotonic()
        session = self._registry.session_id
        started = time.monotonic()
        try:
            self._note_session(session)
            if not self._hold_lease(reconciler, session, work):
                return
            if self._settle_at is not None and time.monotonic() >= self._settle_at:
                self._settle_at = None
                reconciler.scope = replace(reconciler.scope, settled=True)
                work.local = True  # take this container's rewrites over from the per-host one
            if work.full:
                reconciler.refresh_host_addresses()
            paths, known = self._paths_to_read(reconciler, work)
            bulk = work.full or work.local
            summary = self._reconcile(reconciler, sorted(paths), session, bulk)
            self._log.not_readable(self._registry.take_denied())
        except Interrupted:
            raise
        except Exception as exc:  # connection loss, no permission: try these scopes again
            self._log.connection("zookeeper", "pass failed", problem=f"{type(exc).__name__} {exc}")
            self._requeue(work)
            return
        self._log.recovered("zookeeper")
        self._commit_known_paths(reconciler, known)
        for scope in work.roots | ({_EVERYTHING} if work.full else set()):
            self._retry.pop(scope, None)
        seconds = time.monotonic() - started
        self._log.debug("pass", full=work.full, local=work.local, paths=len(paths),
                        seconds=round(seconds, 4))  # fmt: skip
        self.metrics.reconciled(seconds, work.full)
        self._reconciled_once |= work.full
        if self._prober is not None:
            self._prober.watch(reconciler.managed_endpoints())
        if work.full or work.local:
            self._log.resync(summary, seconds, "full" if work.full else "local")

    def _reconcile(
        self, reconciler: Reconciler, paths: list[str], session: int, bulk: bool
    ) -> Counter[str]:
        """Read, plan and write ``paths`` a chunk at a time (memory stays bounded, a stop is
        honoured between chunks); return how many decisions of each kind were made. One
        chunk's writes are in flight while the next chunk is read and planned. ``bulk``
        (a resync): large chunks, and progress lines."""
        summary: Counter[str] = Counter()
        progress = Progress(self._log.progress if bulk else None)
        size = _CHUNK if bulk else _SCOPED_CHUNK
        in_flight: tuple[list[str], list[Decision], Writes] | None = None
        for start in range(0, len(paths), size):
            if self._stopping.is_set():
                raise Interrupted
            chunk = paths[start : start + size]
            decisions = reconciler.plan(chunk, session)
            if reconciler.intend(decisions):
                self._save_state()
            writes = self._registry.start([d.transaction for d in decisions if d.transaction])
            if in_flight is not None:
                self._settle(reconciler, *in_flight, session, summary)
            in_flight = (chunk, decisions, writes)
            progress("reconciling paths", min(start + size, len(paths)), len(paths))
        if in_flight is not None:
            self._settle(reconciler, *in_flight, session, summary)
        return summary

    def _settle(
        self,
        reconciler: Reconciler,
        chunk: list[str],
        decisions: list[Decision],
        writes: Writes,
        session: int,
        summary: Counter[str],
    ) -> None:
        """Wait for a chunk's writes, then log, remember and count what its decisions did."""
        outcomes = self._outcomes(decisions, self._registry.finish(writes))
        self._index_paths(reconciler, decisions)
        again = {d.node.parent for d in decisions if d.provisional} | {
            d.node.parent for d, o in outcomes.items() if not o.ok and not o.denied
        }
        for path in chunk:
            if path in again:
                self._schedule_retry(path)
            else:
                self._retry.pop(path, None)
        if reconciler.remember(decisions, outcomes, session):
            self._save_state()
        self._count(decisions, outcomes)
        summary.update(str(d.action) for d in decisions)
        summary["other_hosts"] += sum(1 for d in decisions if not d.local)

    def _count(self, decisions: list[Decision], outcomes: dict[Decision, Outcome]) -> None:
        """Per-path tallies of managed and refused registrations, for the gauges."""
        tallies: dict[str, list[int]] = {}
        for d in decisions:
            tally = tallies.setdefault(d.node.parent, [0, 0])
            outcome = outcomes.get(d)
            if d.rewritten_path and (outcome is None or outcome.ok):
                tally[0] += 1
            tally[1] += d.refused
        for path, (managed, refused) in tallies.items():
            self._counted[path] = (managed, refused)
        self.metrics.managed.set(sum(m for m, _ in self._counted.values()))
        self.metrics.refused.set(sum(r for _, r in self._counted.values()))

    def _note_session(self, session: int) -> None:
        if session == self._state.session_id:
            if session == self._earlier_session:
                self._log.connection("session", "resumed", session=f"0x{session:x}")
            return
        self._state.session_id = session
        self._state.password = self._registry.session_password
        self._save_state(now=True)

    def _take_address(self, reconciler: Reconciler, work: Work) -> None:
        """Adopt a newly found advertised address; a change re-points every managed
        registration (each in one transaction) and is logged once, here."""
        with self._address_lock:
            found, self._new_address = self._new_address, None
        if found is None:
            return
        before, self._address = self._address, found
        reconciler.set_address(found.address, found.source)
        if before is None:
            self._log.info("advertised address found", address=found.address, source=found.source)
            work.full = True
        elif before.address != found.address:
            self._log.info(
                "advertised address changed", before=before.address, address=found.address,
                source=found.source,
            )  # fmt: skip
            work.local = True

    def _decide_scope(self, reconciler: Reconciler, work: Work) -> bool:
        """Find which containers this sidecar serves (see scope.py); False while a per-app
        sidecar has not found its container yet. A named container is looked for again on
        every pass (it may be re-created); a detected one is found once."""
        if self._scope_decided and (self._engine is None or not self._settings.container):
            return True
        if self._engine is None:
            self._adopt_scope(reconciler, DeploymentScope(), work)  # this namespace's mapping
            return True
        choice = choose(
            self._settings.scope, self._settings.container, list(self._containers.values()),
            reconciler.interface_addresses(),
        )  # fmt: skip
        if isinstance(choice, str):
            if self._scope_decided:
                return True  # keep serving the container last found: it may come back
            if choice != self._scope_waiting:
                self._log.connection("scope", "waiting", problem=choice)
            self._scope_waiting = choice
            return False
        self._scope_waiting = ""
        if not self._scope_decided or choice.app != reconciler.scope.app:
            self._adopt_scope(reconciler, choice, work)
        return True

    def _adopt_scope(self, reconciler: Reconciler, choice: DeploymentScope, work: Work) -> None:
        """Serve ``choice`` from now on, under its own lease (giving up the previous one)."""
        previous = self._lease_path if self._holding_lease else ""
        reconciler.scope = replace(choice, peers=reconciler.scope.peers, settled=not choice.app)
        self._lease_path = f"{reconciler.lease_parent}/{reconciler.scope.lease_name}"
        self._dirty.lease_paths = {reconciler.lease_parent, self._lease_path}
        self._log.info("scope", scope=choice.describe(), lease=self._lease_path)
        if previous and self._registry.connected:
            self._registry.apply_all([Transaction((Delete(previous, -1),))])
        self._holding_lease = False
        self._scope_decided = True
        work.lease = work.full = True

    def _hold_lease(self, reconciler: Reconciler, session: int, work: Work) -> bool:
        """Only the lease holder reconciles its scope.

        The lease is free, ours, or held by a session this sidecar may take it from: its own
        earlier session (from the state file), or one the servers say is gone (a sidecar
        killed without a state file). Otherwise another live sidecar holds it: stand by.
        Peers' leases are read here too: they say which containers per-app sidecars claim.
        """
        path = self._lease_path
        if self._holding_lease and not work.lease:
            return True
        reconciler.read_peers()
        owner = self._registry.owner_of(path)
        if owner != session:
            take_from = None
            if owner is not None and (
                owner == self._earlier_session or reconciler.session_gone(owner)
            ):
                take_from = owner
            if owner is None or take_from is not None:
                about = {"host": socket.gethostname(), "pid": str(os.getpid()),
                         "advertise_host": reconciler.advertise_host,
                         "advertise_source": reconciler.advertise_source}  # fmt: skip
                self._registry.acquire(path, lease_data(reconciler.scope, **about), take_from)
                owner = self._registry.owner_of(path)
        holding = owner == session
        if holding and not self._holding_lease:
            self._log.connection("lease", "held", lease=path, session=f"0x{session:x}")
            self._retry.pop(_LEASE, None)
            work.full = True  # everything that waited while standing by
            if reconciler.scope.app and not reconciler.scope.settled:
                self._settle_at = time.monotonic() + _SETTLE
        elif not holding:
            holder = (self._registry.read_data(path) or b"").decode(errors="replace")
            self._log.connection(
                "lease", "held by another sidecar: standing by", problem=holder,
                lease=path, session=f"0x{owner or 0:x}",
            )  # fmt: skip
            self._schedule_retry(_LEASE)
        self._holding_lease = holding
        self.metrics.lease.set(holding)
        return holding

    def _refresh_containers(self, reconciler: Reconciler, work: Work) -> bool:
        """Bring the container view up to date; False while Docker cannot be trusted."""
        if STATIC_ID in work.containers or work.all_containers:
            work.containers.discard(STATIC_ID)
            self._reload_static(work)
        if self._engine is not None and not self._refresh_docker(self._engine, work):
            return False
        static = self._static.container(reconciler.interface_addresses())
        unreachable = self._prober.unreachable() if self._prober else {}
        view = (
            tuple(self._containers.values()), static, tuple(sorted(unreachable.items())),
            tuple(self._subnets), tuple(sorted(reconciler.interface_addresses())),
            tuple(self._gateways),
        )  # fmt: skip
        if view != self._indexed:
            # Rebuilt only when something changed: a large static mapping makes it costly.
            self._indexed = view
            containers = [*view[0], *([static] if static else [])]
            reconciler.containers = ContainerIndex(
                containers, unreachable, self._subnets, reconciler.interface_addresses(),
                self._gateways,
            )  # fmt: skip
        return True

    def _reload_static(self, work: Work) -> None:
        if self._settings.static_file is None:
            return
        try:
            mapping = static_source.configured(
                self._settings.static_file, self._settings.static_ports
            )
        except static_source.StaticMappingError as exc:
            self._log.connection("static mapping", "unchanged", problem=str(exc))
            return
        if mapping != self._static:
            self._log.info("static mapping changed", ports=dict(mapping.ports))
            self._static = mapping
            work.paths |= self._paths_of({STATIC_ID})

    def _refresh_docker(self, engine: DockerEngine, work: Work) -> bool:
        if not self._docker_subscribed.is_set():
            if self._docker_fresh:
                self._docker_fresh = False
                self._log.docker_stale()
            self._log.debug("pass skipped", reason="Docker Engine unreachable")
            return False
        try:
            if work.all_containers or not self._docker_fresh:
                listed = engine.running_containers()
                subnets, self._gateways = engine.networks()
                if self._subnets and subnets != self._subnets:
                    # A new network: addresses not indexed before may now be this host's.
                    work.full = True
                self._subnets = subnets
                work.paths |= self._paths_of(set(self._containers) | {c.id for c in listed})
                self._containers = {c.id: c for c in listed}
                self._docker_fresh = True
                self._retry.pop(_CONTAINERS, None)
            else:
                for container_id in work.containers:
                    self._log.debug("container changed", container=container_id[:12])
                    work.paths |= self._paths_of({container_id})
                    current = engine.container(container_id)
                    self._containers.pop(container_id, None)
                    if current is not None:
                        self._containers[container_id] = current
                    work.paths |= self._paths_of({container_id})
        except DockerUnavailable as exc:
            # The event stream may still be fine; list everything again once Docker answers.
            self._log.connection("docker", "unavailable", problem=str(exc))
            self._docker_fresh = False
            self._schedule_retry(_CONTAINERS)
            self._requeue(work)
            return False
        self._log.recovered("docker")
        self.metrics.connected.labels("docker").set(1)
        return True

    def _paths_of(self, container_ids: set[str]) -> set[str]:
        keys = set(container_ids)
        for container_id in container_ids:
            if container_id in self._containers:
                keys.update(self._containers[container_id].addresses)
        return {path for key in keys for path in self._paths_by_key.get(key, ())}

    def _paths_to_read(
        self, reconciler: Reconciler, work: Work
    ) -> tuple[set[str], dict[str, set[str]]]:
        """The providers paths this pass reads, and each re-listed root's current paths (taken
        as known only once the pass has succeeded)."""
        roots = set(self._roots) if work.full else work.roots
        paths = set(work.paths)
        known: dict[str, set[str]] = {}
        for root in roots:
            current = set(reconciler.scope_paths(root))
            known[root] = current
            paths |= current if work.full else current - self._known_paths[root]
        # Paths holding remembered rewrites are read too: those may have to be re-created.
        if work.full or work.local:
            paths |= set(reconciler.managed)
        if work.local:
            local = {key for c in self._containers.values() for key in (c.id, *c.addresses)}
            local |= {STATIC_ID, *self._static_addresses(reconciler)}
            paths |= {path for key in local for path in self._paths_by_key.get(key, ())}
            paths |= self._registry.changed_since_read(self._next_sweep_slice())
        return paths, known

    def _next_sweep_slice(self) -> set[str]:
        everything = sorted(path for paths in self._known_paths.values() for path in paths)
        part, self._swept_up_to = sweep_slice(everything, self._swept_up_to)
        return set(part)

    def _static_addresses(self, reconciler: Reconciler) -> set[str]:
        static = self._static.container(reconciler.interface_addresses())
        return set(static.addresses) if static else set()

    def _commit_known_paths(self, reconciler: Reconciler, known: dict[str, set[str]]) -> None:
        for root, current in known.items():
            for gone in self._known_paths[root] - current:
                self._forget(gone)
                self._counted.pop(gone, None)
                reconciler.forget(gone)
            self._known_paths[root] = current

    def _index_paths(self, reconciler: Reconciler, decisions: list[Decision]) -> None:
        """Remember which addresses and containers each path mentions: those that are or may
        become this host's (a local container's, or in one of its Docker networks). Other
        addresses can never be this host's containers; leaving them out keeps memory flat."""
        containers = reconciler.containers
        local = containers.addresses()
        keys_by_path: dict[str, set[str]] = defaultdict(set)
        names_by_path: dict[str, set[str]] = defaultdict(set)
        for d in decisions:
            keys = keys_by_path[d.node.parent]
            names_by_path[d.node.parent].add(d.node.name)
            if d.original and (
                d.original.host in local or containers.in_docker_network(d.original.host)
            ):
                keys.add(d.original.host)
            if d.container:
                keys.add(d.container.id)
        for path, keys in keys_by_path.items():
            self._forget(path)
            self._keys_by_path[path] = keys
            for key in keys:
                self._paths_by_key[key].add(path)
            self._log.forget_missing(path, names_by_path[path])

    def _forget(self, path: str) -> None:
        for key in self._keys_by_path.pop(path, ()):
            self._paths_by_key[key].discard(path)
            if not self._paths_by_key[key]:
                del self._paths_by_key[key]

    def _outcomes(
        self, decisions: list[Decision], outcomes: list[Outcome]
    ) -> dict[Decision, Outcome]:
        """Log and count how each write went; report what was left alone."""
        writes = [d for d in decisions if d.transaction is not None]
        for decision, outcome in zip(writes, outcomes, strict=True):
            self._log.applied(decision, outcome)
            result = "ok" if outcome.ok else "denied" if outcome.denied else "failed"
            self.metrics.writes.labels(str(decision.action), result).inc()
        for decision in decisions:
            if decision.action is Action.LEAVE:
                self._log.left_alone(decision)
        return dict(zip(writes, outcomes, strict=True))

    def _save_state(self, now: bool = False) -> None:
        """Write the state file, at most every _SAVE_EVERY seconds unless ``now``: a storm of
        rewrites must not rewrite a large file for each pass. What is not written yet is
        written by the loop when the time comes, and at exit."""
        if self._state_file is None:
            return
        due = self._saved_at + _SAVE_EVERY
        if not now and time.monotonic() < due:
            self._save_pending = True
            return
        self._save_pending = False
        self._saved_at = time.monotonic()
        if self._reconciler is not None:
            self._state.engine = self._reconciler.engine_id
            self._state.managed = {
                r.node.path: (r.node.data, r.marker.to_state())
                for nodes in self._reconciler.managed.values()
                for r in nodes.values()
            }
        try:
            self._state_file.save(self._state)
        except OSError as exc:
            self._log.connection("state file", "not written", problem=str(exc))

    def _schedule_retry(self, scope: str) -> None:
        """Read the scope again later, backing off while it keeps failing."""
        _, delay = self._retry.get(scope, (0.0, _RETRY_FIRST / 2))
        delay = min(delay * 2, _RETRY_MAX)
        self._retry[scope] = (time.monotonic() + delay, delay)

    def _add_due_retries(self, work: Work) -> None:
        now = time.monotonic()
        for scope, (at, delay) in list(self._retry.items()):
            if at > now:
                continue
            # Keep the delay so a repeated failure backs off further; a good read clears it.
            self._retry[scope] = (float("inf"), delay)
            if scope == _EVERYTHING:
                work.full = True
            elif scope == _CONTAINERS:
                work.all_containers = True
            elif scope == _LEASE:
                work.lease = True
            elif scope in self._roots:
                work.roots.add(scope)
            else:
                work.paths.add(scope)

    def _requeue(self, work: Work) -> None:
        scopes = work.paths | work.roots
        scopes |= {_EVERYTHING} if work.full else set()
        scopes |= {_LEASE} if work.lease else set()
        for scope in scopes:
            self._schedule_retry(scope)


def sweep_slice(everything: list[str], start: int) -> tuple[list[str], int]:
    """The next 1/_SWEEP_RESYNCS of ``everything`` from ``start`` on, wrapping past the end, and
    where the one after begins; a registry that grows or shrinks meanwhile is still swept."""
    if not everything:
        return [], 0
    start %= len(everything)
    end = start + -(-len(everything) // _SWEEP_RESYNCS)
    return everything[start:end] + everything[: max(0, end - len(everything))], end
