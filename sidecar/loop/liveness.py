"""Whether work is getting done, for /healthz, /readyz and the metrics: since when the oldest
work still to do has waited, and when the loop last got anything done.

The loop thread writes it (plain values, each written whole); the ops threads read it.
Liveness is progress, not threads being alive: a loop stuck in one call while work waits
fails /healthz (restarting the process is what helps); work that waits longer than it should
(a write failing again and again, a pass that cannot run, ZooKeeper away) fails /readyz. A
loop that keeps trying while what it needs is down is not stuck: it gets its attempts done.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Bounds:
    """How long work may wait: before /readyz fails (``late``), and before a loop that got
    nothing done meanwhile counts as stuck and /healthz fails (``stuck``)."""

    late: float
    stuck: float

    @classmethod
    def of(cls, resync_seconds: float, session_timeout: float) -> Bounds:
        """From the settings: a ZooKeeper request waits up to about the session timeout
        before its connection is given up, a pass of a large registry takes seconds per
        chunk, and the periodic resync brings work every period."""
        late = max(10.0, resync_seconds / 2, session_timeout)
        return cls(late, max(60.0, 4 * session_timeout, 2 * late))


class Liveness:
    """The loop's progress, as the ops threads read it."""

    def __init__(
        self,
        bounds: Bounds,
        waiting_since: Callable[[], float | None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``waiting_since``: when the oldest work marked and not yet taken was marked."""
        self.bounds = bounds
        self._waiting_since = waiting_since
        self._clock = clock
        self.progress_at = clock()  # when the loop last got something done
        self.turn_since: float | None = None  # the loop's current turn began then
        self.backlog_since: float | None = None  # oldest work taken and put off, as published

    def began(self) -> None:
        """The loop took work and works on it."""
        self.turn_since = self._clock()

    def progressed(self) -> None:
        """Something got done (a chunk of paths, a turn, an attempt at what it waits for)."""
        self.progress_at = self._clock()

    def ended(self, backlog_since: float | None) -> None:
        """The turn is over; ``backlog_since``: since when the oldest work it put off (to
        retry, or for the connection) has waited."""
        self.backlog_since = backlog_since
        self.turn_since = None
        self.progressed()

    def oldest(self) -> float:
        """Seconds the oldest work still to do has waited (0: none)."""
        since = [t for t in (self._waiting_since(), self.turn_since, self.backlog_since) if t]
        return self._clock() - min(since) if since else 0.0

    def stuck(self) -> str:
        """Why the loop is stuck ("": it is not): work waits, and nothing got done for longer
        than the bound."""
        waiting = self._waiting_since() is not None or self.turn_since is not None
        quiet = self._clock() - self.progress_at
        if waiting and quiet > self.bounds.stuck:
            return f"the reconcile loop got nothing done for {quiet:.0f} s while work waits"
        return ""

    def late(self) -> str:
        """Why work is late ("": it is not)."""
        oldest = self.oldest()
        if oldest > self.bounds.late:
            return f"work has waited {oldest:.0f} s (more than {self.bounds.late:.0f} s)"
        return ""
