"""The loop: one thread that waits for dirty work, runs a reconcile pass over it, and repeats;
a periodic resync every --resync-seconds; a graceful stop.

The loop thread owns every component of the pass. Other threads only mark work dirty (see
dirty.py) or read what the loop publishes: ``readiness`` (a tuple of reasons) and the
metrics.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sidecar import records
from sidecar.loop.components import Components
from sidecar.loop.dirty import Dirty, Work
from sidecar.loop.liveness import Bounds, Liveness
from sidecar.loop.persistence import Persistence
from sidecar.loop.reconcile import Reconciler
from sidecar.loop.retries import FIRST, MAX, Whole
from sidecar.loop.roles import Role
from sidecar.model import Transaction
from sidecar.ops.server import OpsServer
from sidecar.protocols import Engine, Registry, Source
from sidecar.registry.outcomes import Interrupted
from sidecar.report.events import Events
from sidecar.sources.address import AdvertiseHost
from sidecar.sources.docker import DockerUnavailable
from sidecar.sources.static import identity as static_identity


@dataclass
class Runtime:
    """What the loop starts and stops around its passes."""

    registry: Registry
    engine: Engine | None
    dirty: Dirty
    events: Events
    sources: list[Source]
    ops: OpsServer | None
    resync_seconds: float
    close_session_on_exit: bool
    persistence: Persistence  # the state file: the session to resume, forgotten at the end
    stopping: threading.Event  # set once asked to stop (the registry stops waiting too)
    # Builds the pass's components once the engine's identity is known (see wiring.py).
    components_for: Callable[[str, threading.Event], Components]
    role: Role  # watching, a fleet member or a proxy: chosen once (see roles.py)
    bounds: Bounds  # how long work may wait (see liveness.py)


class Loop:
    """Runs the sidecar: keeps every provider registration under the roots reconciled."""

    def __init__(self, runtime: Runtime, address: AdvertiseHost | None) -> None:
        """``address`` None: no configured source answered yet; the sidecar waits for one."""
        self._rt = runtime
        self._address = address
        self._stopping = runtime.stopping
        self.reconciler: Reconciler | None = None
        self.readiness: tuple[str, ...] = ("starting",)
        self.ended = False  # run() returned (asked to stop, or not)
        self.liveness = Liveness(runtime.bounds, runtime.dirty.waiting_since)

    def stop(self) -> None:
        """Ask the loop to return soon: requests in flight are abandoned."""
        self._stopping.set()
        self._rt.dirty.stop()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run(self) -> None:
        """Connect, then reconcile until stop() is called."""
        rt = self._rt
        earlier = rt.persistence.earlier_session
        resuming = f"0x{earlier:x}" if earlier else None
        rt.events.connection("zookeeper", "connecting", resuming=resuming)
        if rt.ops is not None:
            rt.ops.start()
            rt.events.info("ops_listening", address=f"{rt.ops.host}:{rt.ops.port}")
        rt.registry.connect_in_background()
        try:
            engine_id = self._wait_for_engine_id()
            if self.stopping:
                return
            components = rt.components_for(engine_id, self._stopping)
            self.reconciler = Reconciler(components, rt.role, self._address)
            self.reconciler.progressed = self.liveness.progressed
            for source in rt.sources:
                source.start()
            if rt.engine is None:
                rt.dirty.everything()  # no Docker subscription to wait for
            self._loop(self.reconciler)
        finally:
            self.ended = True
            self._shut_down()

    def _loop(self, reconciler: Reconciler) -> None:
        components = reconciler.components
        rt = self._rt
        next_resync = time.monotonic() + rt.resync_seconds
        while not self.stopping:
            now = time.monotonic()
            if now >= next_resync:
                rt.dirty.periodic()
                next_resync = now + rt.resync_seconds
            deadline = min(next_resync, components.retries.next_due(),
                           components.lease.next_deadline(),
                           reconciler.role.next_deadline())  # fmt: skip
            work = rt.dirty.take(timeout=max(0.0, deadline - time.monotonic()))
            if self.stopping:
                return
            rt.dirty.watch_leases(components.lease.watched_paths())
            self.liveness.began()
            try:
                reconciler.absorb(work)
                reconciler.run_pass(work)
            except Interrupted:
                return
            except Exception:
                # A bug, not an outage: say where, and try everything again after a while.
                rt.events.exception("pass_crashed")
                components.retries.schedule(Whole.EVERYTHING)
            self.liveness.ended(reconciler.backlog_since())
            self.readiness = reconciler.not_ready = self._not_ready(reconciler)
            if work.more:
                rt.dirty.again()

    def _not_ready(self, reconciler: Reconciler) -> tuple[str, ...]:
        """Why the sidecar is not ready (empty when it is)."""
        components = reconciler.components
        inventory, lease = components.inventory, components.lease
        reasons = []
        if inventory.engine is not None and not (inventory.subscribed and inventory.fresh):
            reasons.append("Docker Engine not reachable")
        if nat := inventory.nat_not_ready():
            reasons.append(nat)
        if reconciler.address is None:
            reasons.append("no advertised address: no configured source answered yet")
        if lease.waiting:
            reasons.append(f"per-app sidecar waiting: {lease.waiting}")
        reasons += reconciler.role.not_ready()
        if not lease.holding:
            reasons.append("not holding its lease (starting, or standing by)")
        elif not reconciler.reconciled_once:
            reasons.append("first reconcile not done")
        return tuple(reasons)

    def not_ready(self) -> list[str]:
        """For /readyz: why the sidecar is not ready (empty when it is). Called from the ops
        threads: reads the registry's connection state and what the loop published."""
        reasons = [] if self._rt.registry.connected else ["not connected to ZooKeeper"]
        late = self.liveness.late()
        own = self._rt.role.not_ready_now()
        return reasons + list(self.readiness) + ([late] if late else []) + own

    def not_healthy(self) -> list[str]:
        """For /healthz: what no longer runs and will not come back by itself (an orchestrator
        should restart the process). Called from the ops threads."""
        problems = []
        if self.ended and not self.stopping:
            problems.append("the reconcile loop has ended")
        elif stuck := self.liveness.stuck():
            problems.append(stuck)
        if not self._rt.registry.alive:
            problems.append("the ZooKeeper client's connection thread has died")
        return problems

    def _wait_for_engine_id(self) -> str:
        """The identity this sidecar's markers and lease carry: the Docker engine's, or with
        no Docker, this host's (a pod's)."""
        engine = self._rt.engine
        if engine is None:
            return static_identity()
        delay = FIRST
        while not self.stopping:
            try:
                return engine.engine_id()
            except DockerUnavailable as exc:
                self._rt.events.connection("docker", "unavailable", problem=str(exc))
                self.liveness.progressed()  # an attempt made: waiting for Docker, not stuck
                self._stopping.wait(delay)
                delay = min(delay * 2, MAX)
        return ""

    def _shut_down(self) -> None:
        """Release everything; each step on its own, so one failure skips no other."""
        rt = self._rt
        steps: list[Callable[[], None]] = [s.stop for s in rt.sources]
        components = self.reconciler.components if self.reconciler else None
        if rt.engine is not None:
            steps.append(rt.engine.close)
        if rt.ops is not None:
            steps.append(rt.ops.stop)
        steps.append(rt.role.stop)
        if rt.close_session_on_exit:
            if components is not None:
                steps.append(lambda: _drop_records(components))
            steps.append(rt.registry.close)
            if components is not None:
                steps.append(rt.persistence.forget_session)
        for step in steps:
            try:
                step()
            except Exception as exc:  # shutting down anyway: report and go on
                rt.events.connection("shutdown", "step_failed", problem=f"{step}: {exc}")

    def absorb_and_pass(self, work: Work) -> None:
        """One pass of this very loop over ``work`` (plan and status run exactly this)."""
        assert self.reconciler is not None
        self.reconciler.absorb(work)
        self.reconciler.run_pass(work)


def _drop_records(components: Components) -> None:
    """Decommissioning (--close-session-on-exit): the rewrites go with the session, so their
    records go first, or the next sidecar of this engine would restore them. Sent, not
    waited for (the loop is stopping): the server handles them before the session's close,
    which follows them on the same connection. One transaction each, so that a record
    already gone fails alone."""
    engine = components.engine_id
    for nodes in components.memory.managed.values():
        for remembered in nodes.values():
            delete = records.delete(engine, remembered.node.path)
            components.registry.start([Transaction((delete,))])
