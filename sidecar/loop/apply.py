"""The apply step: the only place the loop writes the registry. Sends the decisions'
transactions (each one atomic ``multi``), then reports each outcome: a log line, a counter,
and the gauges of registrations managed and refused."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sidecar.model import Outcome, WriteResult
from sidecar.ops.metrics import Metrics
from sidecar.plan import Action, Decision
from sidecar.protocols import Transactions
from sidecar.report.events import Events

Results = dict[Decision, WriteResult]


class Applier:
    """Writes decisions and reports how they went."""

    def __init__(self, registry: Transactions, events: Events, metrics: Metrics) -> None:
        self._registry = registry
        self._events = events
        self._metrics = metrics
        self._counted: dict[str, tuple[int, int]] = {}  # path -> (managed, refused)
        self._totals = (0, 0)  # the sums of _counted

    def start(self, decisions: list[Decision]) -> Callable[[], Results]:
        """Send the decisions' transactions; calling the result waits for their outcomes,
        logs and counts them, and reports what was left alone."""
        writes = [d for d in decisions if d.transaction is not None]
        pending = self._registry.start([d.transaction for d in writes if d.transaction])

        def finish() -> Results:
            results = dict(zip(writes, pending(), strict=True))
            self._report(decisions, results)
            return results

        return finish

    def _report(self, decisions: list[Decision], results: Results) -> None:
        for decision, result in results.items():
            self._events.applied(decision, result)
            if result.outcome is not Outcome.DRY_RUN:
                label = result.outcome if result.outcome is not Outcome.UNKNOWN else "failed"
                self._metrics.writes.labels(str(decision.action), str(label)).inc()
        for decision in decisions:
            if decision.action is Action.LEAVE:
                self._events.left_alone(decision)
        self._count(decisions, results)

    def _count(self, decisions: list[Decision], results: Results) -> None:
        """Per-path tallies of managed and refused registrations, for the gauges."""
        tallies: dict[str, list[int]] = {}
        for d in decisions:
            tally = tallies.setdefault(d.node.parent, [0, 0])
            result = results.get(d)
            if d.rewritten_path and (result is None or result.ok):
                tally[0] += 1
            tally[1] += d.refused
        for path, tally in tallies.items():
            self._add(self._counted.pop(path, (0, 0)), -1)
            if any(tally):  # most paths count nothing: nothing kept for them
                self._counted[path] = (tally[0], tally[1])
                self._add(self._counted[path], 1)
        managed, refused = self.totals()
        self._metrics.managed.set(managed)
        self._metrics.refused.set(refused)

    def _add(self, tally: tuple[int, int], sign: int) -> None:
        # Kept as a running sum: a pass over thousands of paths reports path by path.
        self._totals = (self._totals[0] + sign * tally[0], self._totals[1] + sign * tally[1])

    def totals(self) -> tuple[int, int]:
        """Registrations managed and refused, over every path."""
        return self._totals

    def forget(self, paths: Iterable[str]) -> None:
        """Paths that no longer exist count nothing."""
        for path in paths:
            self._add(self._counted.pop(path, (0, 0)), -1)
