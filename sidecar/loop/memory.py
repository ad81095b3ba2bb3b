"""What the sidecar remembers between passes: the rewrites it manages (and which of them have
a record in ZooKeeper), and which sessions claim each endpoint anywhere in the registry. All
of it can be rebuilt from the registry: the records say what was taken over. Owned by the
loop thread."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace

from sidecar.model import Create, Delete, Endpoint, Outcome, RegistryNode, WriteResult
from sidecar.plan import Action, Decision, Remembered
from sidecar.records import is_record


class Memory:
    """Managed rewrites per path (as last written or seen) and endpoint claims."""

    def __init__(self) -> None:
        self.managed: dict[str, dict[str, Remembered]] = {}
        self.recorded: set[str] = set()  # record paths known to exist
        self.records_stale = True  # read the records again before planning
        self._claims_by_path: dict[str, dict[Endpoint, set[int]]] = {}
        self._claims: dict[Endpoint, Counter[int]] = {}

    def remembered(self, parent: str) -> list[Remembered]:
        return list(self.managed.get(parent, {}).values())

    def remembers(self, parent: str, name: str) -> bool:
        return name in self.managed.get(parent, {})

    def restore(self, remembered: Iterable[Remembered]) -> set[str]:
        """Rewrites managed before (from the records, or an earlier version's state file) that
        this memory does not know yet; returns the paths they are in."""
        added = set()
        for entry in remembered:
            nodes = self.managed.setdefault(entry.node.parent, {})
            if entry.node.name not in nodes:
                nodes[entry.node.name] = entry
                added.add(entry.node.parent)
        return added

    def records_read(self, paths: set[str], remembered: Iterable[Remembered]) -> set[str]:
        """The records as just listed; returns the paths of rewrites not known before."""
        self.recorded = paths
        self.records_stale = False
        return self.restore(remembered)

    def written(
        self, decisions: Iterable[Decision], results: Mapping[Decision, WriteResult]
    ) -> None:
        """Follow which records exist from what was written; a write that failed or may have
        gone either way makes the records worth reading again."""
        for d in decisions:
            ops = [op for op in d.transaction.ops if is_record(op.path)] if d.transaction else []
            result = results.get(d)
            if not ops or result is None:
                continue
            if not result.ok:
                self.records_stale |= result.outcome is not Outcome.DRY_RUN
                continue
            for op in ops:
                if isinstance(op, Delete):
                    self.recorded.discard(op.path)
                else:
                    self.recorded.add(op.path)

    def intend(self, decisions: Iterable[Decision]) -> bool:
        """Write ahead: remember the nodes these decisions are about to create, so that a
        crash between the write and its confirmation loses nothing. True if that changed."""
        changed = False
        for d in decisions:
            created = _created(d) if d.action.writes else None
            if created is not None:
                nodes = self.managed.setdefault(created.node.parent, {})
                changed |= created.node.name not in nodes
                nodes.setdefault(created.node.name, created)
        return changed

    def remember(
        self,
        decisions: Iterable[Decision],
        results: Mapping[Decision, WriteResult],
        session: int,
        is_mirror: Callable[[str], bool],
    ) -> bool:
        """Update what this sidecar manages from a pass's results; True if that changed.
        ``is_mirror`` tells mirror paths, which are derived from their originals and never
        restored from memory."""
        before = {p: dict(nodes) for p, nodes in self.managed.items()}
        planned: dict[str, dict[str, Remembered]] = {}
        for d in decisions:
            if is_mirror(d.node.parent):
                continue
            now = planned.setdefault(d.node.parent, {})
            _remember_one(d, results.get(d), before.get(d.node.parent, {}), now, session)
        for parent, nodes in planned.items():
            if nodes:
                self.managed[parent] = nodes
            else:
                self.managed.pop(parent, None)
        return self.managed != before

    def endpoints(self) -> set[Endpoint]:
        """The container endpoints behind this sidecar's rewrites (what the prober checks)."""
        return {
            r.marker.container_endpoint for nodes in self.managed.values() for r in nodes.values()
        }

    def provider_sessions(self, parents: Iterable[str]) -> dict[str, set[int]]:
        """Per path holding rewrites, the sessions of their providers (none: persistent)."""
        return {
            parent: {r.marker.provider_session for r in self.managed[parent].values()} - {0}
            for parent in parents
            if parent in self.managed
        }

    def forget(self, parent: str) -> None:
        """A path that no longer exists."""
        self.managed.pop(parent, None)
        self.set_claims(parent, {})

    def set_claims(self, parent: str, claims: dict[Endpoint, set[int]]) -> None:
        """The sessions that register each endpoint in ``parent``, as just read."""
        for endpoint, sessions in self._claims_by_path.pop(parent, {}).items():
            counter = self._claims[endpoint]
            counter.subtract(sessions)
            for session in sessions:
                if counter[session] <= 0:
                    del counter[session]
            if not counter:
                del self._claims[endpoint]
        if claims:
            self._claims_by_path[parent] = claims
            for endpoint, sessions in claims.items():
                self._claims.setdefault(endpoint, Counter()).update(sessions)

    @property
    def claims(self) -> Mapping[Endpoint, Counter[int]]:
        """Per endpoint, the sessions that register it anywhere (with how many paths)."""
        return self._claims


def _remember_one(
    d: Decision,
    result: WriteResult | None,
    previous: dict[str, Remembered],
    now: dict[str, Remembered],
    session: int,
) -> None:
    """What one decision leaves this sidecar managing in its path."""
    if d.action is Action.KEEP and d.rewritten_path and d.marker is not None:
        now[d.node.name] = Remembered(d.node, d.marker)
    elif d.action is Action.HOLD or (d.action is Action.REMOVE and d.suspended):
        if d.node.name in previous:
            now[d.node.name] = previous[d.node.name]
        elif d.marker is not None:
            now[d.node.name] = Remembered(d.node, d.marker)
    elif not d.action.writes:
        return
    elif result is None or result.maybe_applied:
        # Applied, or perhaps applied: remember the result (later passes forget it if it never
        # appeared and its original is back).
        created = _created(d)
        if created is not None:
            now[created.node.name] = replace(created, node=replace(created.node, owner=session))
        if result is not None and not result.ok and d.node.name in previous:
            now[d.node.name] = previous[d.node.name]
    elif d.node.name in previous:
        now[d.node.name] = previous[d.node.name]  # not applied: still to do


def _created(decision: Decision) -> Remembered | None:
    """The node a decision creates in its own path, with its marker."""
    path = decision.rewritten_path
    if path is None or decision.transaction is None or decision.marker is None:
        return None
    data = next(op.data for op in decision.transaction.ops if isinstance(op, Create))
    parent, _, name = path.rpartition("/")
    if parent != decision.node.parent:
        return None
    return Remembered(RegistryNode(parent, name, data, 0, 0), decision.marker)
