"""The scope this sidecar serves and the lease that makes it the only one serving it.

Per-host or per-app is chosen from the running containers (sidecar/scope.py decides); the
lease is an ephemeral node only its holder's session owns. A second sidecar for the same
scope stands by until the first one's session is gone. Owned by the loop thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Protocol

from sidecar.coordination.lease import Lease, leases
from sidecar.loop.dirty import Work
from sidecar.loop.retries import Retries, Whole
from sidecar.model import Container
from sidecar.ops.metrics import Metrics
from sidecar.protocols import Coordination, RegistrySession
from sidecar.report.events import Events
from sidecar.scope import LEASE_ROOT, Scope, choose, lease_data, peers_from


class LeaseRegistry(RegistrySession, Coordination, Protocol):
    """What the lease keeper needs of the registry: the session, and the leases' nodes."""


# How long a per-app sidecar holds its lease before it takes its container's rewrites over
# from the per-host sidecar: time for that one to see the lease and let go.
SETTLE = 2.0


class LeaseKeeper:
    """Chooses the scope, holds its lease, and knows the engine's other live sidecars."""

    def __init__(
        self,
        kind: str,
        named: str | None,
        engine_id: str,
        registry: LeaseRegistry,
        events: Events,
        metrics: Metrics,
        earlier_session: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``kind`` and ``named``: the ``--scope`` and ``--container`` settings;
        ``earlier_session``: the session a restart tried to resume (its lease is ours)."""
        self._kind = kind
        self._named = named
        self._registry = registry
        self._events = events
        self._metrics = metrics
        self._earlier_session = earlier_session
        self._clock = clock
        self.lease_parent = f"{LEASE_ROOT}/{engine_id}"
        self.scope = Scope()
        self.decided = False
        self.waiting = ""  # what a per-app sidecar waits for
        self.holding = False
        self.path = ""
        self._lease: Lease | None = None
        self._settle_at: float | None = None
        self._peers_gone = False

    def decide_scope(
        self, containers: Sequence[Container] | None, own_addresses: set[str], work: Work
    ) -> bool:
        """Find which containers this sidecar serves; False while a per-app sidecar has not
        found its container yet. ``containers`` None: no container engine (a pod with a static
        mapping serves its own namespace). A named container is looked for again on every
        pass (it may be re-created); a detected one is found once."""
        if self.decided and (containers is None or not self._named):
            return True
        if containers is None:
            self._adopt(Scope(), work)
            return True
        choice = choose(self._kind, self._named, list(containers), own_addresses)
        if isinstance(choice, str):
            if self.decided:
                return True  # keep serving the container last found: it may come back
            if choice != self.waiting:
                self._events.connection("scope", "waiting", problem=choice)
            self.waiting = choice
            return False
        self.waiting = ""
        if not self.decided or choice.app != self.scope.app:
            self._adopt(choice, work)
        return True

    def _adopt(self, choice: Scope, work: Work) -> None:
        """Serve ``choice`` from now on, under its own lease (giving up the previous one)."""
        previous = self._lease if self.holding else None
        self.scope = replace(choice, peers=self.scope.peers, settled=not choice.app)
        self.path = f"{self.lease_parent}/{self.scope.lease_name}"
        self._lease = Lease(self._registry, self.path)
        self._events.info("scope_chosen", scope=choice.describe(), lease=self.path)
        if previous is not None and self._registry.connected:
            previous.release()
        self.holding = False
        self.decided = True
        work.lease = work.full = True

    def watched_paths(self) -> frozenset[str]:
        """Paths whose changes concern the lease: the lease parent and this sidecar's lease."""
        return frozenset(p for p in (self.lease_parent, self.path) if p)

    def read_peers(self) -> None:
        """Read which other sidecars of this engine are alive (their leases)."""
        peers = peers_from(leases(self._registry, self.lease_parent), self.scope.lease_name)
        self._peers_gone |= bool(set(self.scope.peers) - set(peers))
        self.scope = replace(self.scope, peers=peers)

    def take_peers_gone(self) -> bool:
        """Whether a peer's lease went since the last call: what it managed may be this
        sidecar's now (a per-app sidecar gone for good leaves its app to the per-host one)."""
        gone, self._peers_gone = self._peers_gone, False
        return gone

    def hold(
        self,
        session: int,
        work: Work,
        about: dict[str, str],
        session_gone: Callable[[int], bool],
        retries: Retries,
    ) -> bool:
        """Only the lease holder reconciles its scope.

        The lease is free, ours, or held by a session this sidecar may take it from: its own
        earlier session (from the state file), or one the servers say is gone (a sidecar
        killed without a state file). Otherwise another live sidecar holds it: stand by.
        Peers' leases are read here too: they say which containers per-app sidecars claim.
        """
        if self.holding and not work.lease:
            return True
        self.read_peers()
        lease = self._lease
        assert lease is not None  # a scope is decided before its lease is held
        owner = lease.hold(
            session, lease_data(self.scope, **about),
            lambda holder: holder == self._earlier_session or session_gone(holder),
        )  # fmt: skip
        holding = owner == session
        if holding and not self.holding:
            self._events.connection("lease", "held", lease=self.path, session=f"0x{session:x}")
            retries.succeeded(Whole.LEASE)
            work.full = True  # everything that waited while standing by
            if self.scope.app and not self.scope.settled:
                self._settle_at = self._clock() + SETTLE
        elif not holding:
            holder = lease.holder_data().decode(errors="replace")
            self._events.connection(
                "lease", "standing_by", problem=f"held by another sidecar: {holder[:200]}",
                lease=self.path, session=f"0x{owner or 0:x}",
            )  # fmt: skip
            retries.schedule(Whole.LEASE, failed=False)  # standing by is no failure
        self.holding = holding
        self._metrics.lease.set(holding)
        return holding

    def observe(self) -> None:
        """An observer (plan, status) holds no lease: it reads its peers and plans as the
        settled holder of its scope would."""
        self.read_peers()
        self.scope = replace(self.scope, settled=True)

    def settle_if_due(self) -> bool:
        """A per-app sidecar that held its lease long enough may take its container's
        rewrites over from the per-host one: True once, when that time comes."""
        if self._settle_at is None or self._clock() < self._settle_at:
            return False
        self._settle_at = None
        self.scope = replace(self.scope, settled=True)
        return True

    def next_deadline(self) -> float:
        return self._settle_at if self._settle_at is not None else float("inf")
