"""The reconcile loop: sources mark scopes dirty, one thread re-reads them, plans and writes.

Watch and event callbacks only record a scope (a providers path, a root, a container) and
wake the loop. The loop re-reads exactly those scopes, so a missed or repeated event costs
nothing, and a periodic full resync catches anything else.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from sidecar.config import Settings
from sidecar.mapping import ContainerIndex
from sidecar.model import Container, Endpoint, RegistryNode
from sidecar.plan import Action, Decision
from sidecar.reconciler import Reconciler
from sidecar.registry.zookeeper import Connection, Outcome, ZooKeeperRegistry
from sidecar.report import DecisionLog
from sidecar.sources.docker import DockerEngine, DockerUnavailable, DockerWatch
from sidecar.sources.probe import Prober
from sidecar.state import State, StateFile

LEASE_ROOT = "/dubbo-nat-sidecar/leases"
# Retry keys besides paths: the whole registry, and the whole container list.
_EVERYTHING = "*"
_CONTAINERS = "containers"
_RETRY_FIRST = 0.2
_RETRY_MAX = 5.0


@dataclass
class Work:
    """Scopes to re-read in the next pass."""

    full: bool = False
    all_containers: bool = False
    lease: bool = False
    roots: set[str] = field(default_factory=set)
    paths: set[str] = field(default_factory=set)
    containers: set[str] = field(default_factory=set)
    addresses: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return (
            self.full
            or self.all_containers
            or self.lease
            or bool(self.roots or self.paths or self.containers or self.addresses)
        )


class DirtyScopes:
    """Thread-safe collection of dirty scopes; marking never blocks for long."""

    def __init__(self, roots: tuple[str, ...], source_of: Callable[[str], str | None]) -> None:
        self._roots = set(roots)
        self._source_of = source_of
        self.lease_path = ""
        self._work = Work()
        self._wake = threading.Condition()

    def path_changed(self, path: str) -> None:
        with self._wake:
            if path == self.lease_path:
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

    def endpoint_changed(self, endpoint: Endpoint) -> None:
        with self._wake:
            self._work.addresses.add(endpoint.host)
            self._wake.notify()

    def everything(self, containers_too: bool = True) -> None:
        with self._wake:
            self._work.full = True
            self._work.all_containers |= containers_too
            self._wake.notify()

    def wake(self) -> None:
        # The condition's lock is re-entrant, so a signal handler on the loop's thread can
        # call this while the loop is inside take().
        with self._wake:
            self._wake.notify()

    def take(self, timeout: float) -> Work:
        """Wait up to ``timeout`` for work, then hand over everything marked so far."""
        with self._wake:
            if not self._work:
                self._wake.wait(timeout)
            work, self._work = self._work, Work()
            return work


class Controller:
    """Runs the sidecar: keeps every provider registration under the roots reconciled."""

    def __init__(self, settings: Settings, advertise_host: str, log: DecisionLog) -> None:
        self._settings = settings
        self._roots = settings.root
        self._advertise_host = advertise_host
        self._log = log
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
                self._state = self._state_file.load()
        resume = (self._state.session_id, self._state.password) if self._state.session_id else None
        self._reconciler: Reconciler | None = None
        self._dirty = dirty = DirtyScopes(settings.root, self._source_of)
        self._registry = ZooKeeperRegistry(
            settings.zookeeper,
            settings.session_timeout,
            on_change=dirty.path_changed,
            on_connection=self._connection_changed,
            resume=resume,
        )
        self._engine = engine = DockerEngine(settings.docker_url)
        self._containers: dict[str, Container] = {}
        self._stopping = threading.Event()
        self.taken_over_by = 0
        self._lease_session = 0
        self._lease_data = json.dumps(
            {"host": socket.gethostname(), "pid": os.getpid(), "advertise_host": advertise_host}
        ).encode()
        self._docker_subscribed = threading.Event()
        self._docker_fresh = False
        self._known_paths: dict[str, set[str]] = {root: set() for root in self._roots}
        # Which providers paths mention an address or container, so a container event
        # re-reads only those paths.
        self._paths_by_key: dict[str, set[str]] = defaultdict(set)
        self._keys_by_path: dict[str, set[str]] = {}
        self._retry: dict[str, tuple[float, float]] = {}
        self._watch = DockerWatch(
            engine,
            on_container=dirty.container_changed,
            on_subscribed=self._docker_subscribed_now,
            on_lost=self._docker_lost,
        )
        probing = settings.probe_seconds > 0 and settings.mode == "replace"
        self._prober = Prober(settings.probe_seconds, dirty.endpoint_changed) if probing else None

    # -- callbacks from the sources: record and return --------------------------------------

    def _connection_changed(self, state: Connection) -> None:
        """ZooKeeper state listener: after any reconnect, watches are gone; read everything."""
        session = f"0x{self._registry.session_id:x}" if state is Connection.CONNECTED else None
        self._log.connection("zookeeper", state.value, session=session)
        if state is Connection.CONNECTED:
            self._dirty.everything(containers_too=False)

    def _docker_subscribed_now(self) -> None:
        self._docker_subscribed.set()
        self._dirty.everything()

    def _docker_lost(self, problem: str) -> None:
        self._docker_subscribed.clear()
        self._log.connection("docker", "lost", problem=problem)
        self._dirty.wake()

    def _source_of(self, path: str) -> str | None:
        return self._reconciler.source_of(path) if self._reconciler else None

    # -- the loop ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish its current pass and return; safe from a signal handler."""
        self._stopping.set()
        self._dirty.wake()

    def run(self) -> None:
        """Connect, then reconcile until stop() is called."""
        stop = self._stopping
        self._log.connection(
            "zookeeper", "connecting",
            resuming=f"0x{self._state.session_id:x}" if self._state.session_id else None,
        )  # fmt: skip
        self._registry.connect_in_background()
        engine_id = self._wait_for_engine_id(stop)
        if stop.is_set():
            return
        self._reconciler = Reconciler(
            self._settings, self._registry, self._advertise_host, engine_id
        )
        if self._state.engine == engine_id:
            for path, data in self._state.managed.items():
                parent, _, name = path.rpartition("/")
                node = RegistryNode(parent, name, data, 0, 0)
                self._reconciler.managed.setdefault(parent, {})[name] = node
        self._dirty.lease_path = f"{LEASE_ROOT}/{engine_id}"
        self._watch.start()
        if self._prober is not None:
            self._prober.start()
        next_resync = time.monotonic() + self._settings.resync_seconds
        try:
            while not stop.is_set():
                now = time.monotonic()
                if now >= next_resync:
                    self._dirty.everything()
                    next_resync = now + self._settings.resync_seconds
                work = self._dirty.take(timeout=self._wait_time(next_resync))
                if stop.is_set():
                    break
                self._pass(self._reconciler, work)
        finally:
            self._watch.stop()
            if self._prober is not None:
                self._prober.stop()
            self._engine.close()
            if self._settings.close_session_on_exit:
                self._registry.close()
                self._state.session_id, self._state.password = 0, b""
                self._save_state()

    def _wait_time(self, next_resync: float) -> float:
        deadlines = [next_resync, *(at for at, _ in self._retry.values())]
        return max(0.0, min(deadlines) - time.monotonic())

    def _wait_for_engine_id(self, stop: threading.Event) -> str:
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
        if not self._refresh_containers(reconciler, work):
            return
        if not self._registry.connected:
            return  # the reconnect marks everything dirty
        session = self._registry.session_id
        started = time.monotonic()
        try:
            if not self._hold_lease(session, work.lease):
                return
            if work.full:
                reconciler.refresh_host_addresses()
            decisions = reconciler.plan(self._paths_to_read(reconciler, work), session)
        except Exception as exc:  # connection loss mid-read, or no permission: try again later
            self._log.connection("zookeeper", "read failed", problem=f"{type(exc).__name__} {exc}")
            self._requeue(work)
            return
        self._log.recovered("zookeeper")
        for scope in work.roots | ({_EVERYTHING} if work.full else set()):
            self._retry.pop(scope, None)
        self._index_paths(decisions)
        self._log.debug(
            "pass", full=work.full, containers=sorted(work.containers),
            paths=len({d.node.parent for d in decisions}),
            seconds=round(time.monotonic() - started, 4),
        )  # fmt: skip
        outcomes = self._apply(decisions)
        again = {d.node.parent for d in decisions if d.provisional} | {
            d.node.parent for d, o in outcomes.items() if not o.ok and not o.denied
        }
        for path in {d.node.parent for d in decisions}:
            if path in again:
                self._schedule_retry(path)
            else:
                self._retry.pop(path, None)
        if reconciler.remember(decisions, outcomes, session):
            self._save_state()
            if self._prober is not None:
                self._prober.watch(reconciler.managed_endpoints())
        if work.full:
            self._log.resync(decisions, time.monotonic() - started)

    def _hold_lease(self, session: int, changed: bool) -> bool:
        """Only one sidecar reconciles an engine's containers: the newest one to start.

        A restarted sidecar takes the lease (and then the earlier run's nodes) over; a sidecar
        whose lease was taken stops instead of fighting over the same nodes.
        """
        path = self._dirty.lease_path
        if self._lease_session != session:
            previous = self._registry.hold_lease(path, self._lease_data)
            if previous:
                self._log.info("lease taken over", lease=path, previous_session=f"0x{previous:x}")
            elif self._state.session_id == session:
                self._log.info("session resumed", session=f"0x{session:x}")
            self._lease_session = session
            self._state.session_id = session
            self._state.password = self._registry.session_password
            self._save_state()
            return True
        if not changed:
            return True
        owner = self._registry.owner_of(path)
        if owner is None:  # deleted by hand: take it again
            self._lease_session = 0
            return self._hold_lease(session, changed)
        if owner != session:
            self.taken_over_by = owner
            self._log.error(
                "another sidecar took over this Docker engine; stopping",
                lease=path, session=f"0x{owner:x}",
            )  # fmt: skip
            self.stop()
            return False
        return True

    def _refresh_containers(self, reconciler: Reconciler, work: Work) -> bool:
        """Bring the container view up to date; False while Docker cannot be trusted."""
        if not self._docker_subscribed.is_set():
            if self._docker_fresh:
                self._docker_fresh = False
                self._log.docker_stale()
            self._log.debug("pass skipped", reason="Docker Engine unreachable")
            return False
        try:
            if work.all_containers or not self._docker_fresh:
                listed = self._engine.running_containers()
                work.paths |= self._paths_of(set(self._containers) | {c.id for c in listed})
                self._containers = {c.id: c for c in listed}
                self._docker_fresh = True
                self._retry.pop(_CONTAINERS, None)
            else:
                for container_id in work.containers:
                    self._log.debug("container changed", container=container_id[:12])
                    work.paths |= self._paths_of({container_id})
                    current = self._engine.container(container_id)
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
        unreachable = self._prober.unreachable() if self._prober else {}
        reconciler.containers = ContainerIndex(self._containers.values(), unreachable)
        return True

    def _paths_of(self, container_ids: set[str]) -> set[str]:
        keys = set(container_ids)
        for container_id in container_ids:
            if container_id in self._containers:
                keys.update(self._containers[container_id].addresses)
        return {path for key in keys for path in self._paths_by_key.get(key, ())}

    def _paths_to_read(self, reconciler: Reconciler, work: Work) -> set[str]:
        roots = set(self._roots) if work.full else work.roots
        paths = set(work.paths)
        for root in roots:
            current = set(reconciler.providers_paths(root))
            new = current - self._known_paths[root]
            for gone in self._known_paths[root] - current:
                self._forget(gone)
                reconciler.forget(gone)
            self._known_paths[root] = current
            paths |= current if work.full else new
        # Paths holding remembered rewrites are read too: those may have to be re-created.
        if work.full:
            paths |= set(reconciler.managed)
        return paths

    def _index_paths(self, decisions: list[Decision]) -> None:
        """Remember which addresses and containers each path mentions."""
        keys_by_path: dict[str, set[str]] = defaultdict(set)
        for d in decisions:
            keys = keys_by_path[d.node.parent]
            if d.original:
                keys.add(d.original.host)
            if d.container:
                keys.add(d.container.id)
        for path, keys in keys_by_path.items():
            self._forget(path)
            self._keys_by_path[path] = keys
            for key in keys:
                self._paths_by_key[key].add(path)
            self._log.forget_missing(
                path, {d.node.name for d in decisions if d.node.parent == path}
            )

    def _forget(self, path: str) -> None:
        for key in self._keys_by_path.pop(path, ()):
            self._paths_by_key[key].discard(path)
            if not self._paths_by_key[key]:
                del self._paths_by_key[key]

    def _apply(self, decisions: list[Decision]) -> dict[Decision, Outcome]:
        """Write what the decisions say; return how each transaction went."""
        writes = [d for d in decisions if d.transaction is not None]
        outcomes = self._registry.apply_all([d.transaction for d in writes if d.transaction])
        for decision, outcome in zip(writes, outcomes, strict=True):
            self._log.applied(decision, outcome)
        for decision in decisions:
            if decision.action is Action.LEAVE:
                self._log.left_alone(decision)
        return dict(zip(writes, outcomes, strict=True))

    def _save_state(self) -> None:
        if self._state_file is None or self._reconciler is None:
            return
        self._state.engine = self._reconciler.engine_id
        self._state.managed = {
            node.path: node.data
            for nodes in self._reconciler.managed.values()
            for node in nodes.values()
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
            elif scope in self._roots:
                work.roots.add(scope)
            else:
                work.paths.add(scope)

    def _requeue(self, work: Work) -> None:
        for scope in work.paths | work.roots | ({_EVERYTHING} if work.full else set()):
            self._schedule_retry(scope)
