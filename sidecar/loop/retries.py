"""Retries with backoff: a scope that failed is read again later, later each time it fails
again, and at once after it succeeds. Owned by the loop thread."""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum

FIRST = 0.05
MAX = 5.0


class Whole(Enum):
    """Scopes other than one path."""

    EVERYTHING = "everything"  # a full resync
    CONTAINERS = "containers"  # the container listing
    LEASE = "lease"
    FLEET = "fleet"  # this member's part in the fleet: membership, election, work
    CARRIED = "carried"  # the scopes of passes that could not run or failed


RetryKey = Whole | str  # a str is a path (a root or a providers/instance path)


class Retries:
    """When each failed scope is due again, and how long its last wait was."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._due: dict[RetryKey, tuple[float, float]] = {}  # key -> (due at, last delay)
        self._failing_since: dict[RetryKey, float] = {}  # keys whose work failed: since when

    def schedule(self, key: RetryKey, failed: bool = True) -> None:
        """Try ``key`` again later, twice as late as the last time (up to MAX). ``failed``
        False: nothing failed, the key only waits for something to be proven."""
        _, delay = self._due.get(key, (0.0, FIRST / 2))
        delay = min(delay * 2, MAX)
        now = self._clock()
        self._due[key] = (now + delay, delay)
        if failed:
            self._failing_since.setdefault(key, now)

    def succeeded(self, key: RetryKey) -> None:
        self._due.pop(key, None)
        self._failing_since.pop(key, None)

    def failing_since(self) -> float | None:
        """Since when the oldest work that failed and is to be retried has failed."""
        return min(self._failing_since.values(), default=None)

    def take_due(self) -> list[RetryKey]:
        """The keys due now. Each keeps its delay, so that another failure backs off
        further; only succeeded() forgets it."""
        now = self._clock()
        due = [key for key, (at, _) in self._due.items() if at <= now]
        for key in due:
            self._due[key] = (float("inf"), self._due[key][1])
        return due

    def hurry(self) -> None:
        """Everything waiting is due now (the connection is back: what failed with it can
        work again), each keeping its delay should it fail again."""
        now = self._clock()
        self._due = {key: (min(at, now), delay) for key, (at, delay) in self._due.items()}

    def next_due(self) -> float:
        """When the earliest retry is due (infinity if none)."""
        return min((at for at, _ in self._due.values()), default=float("inf"))

    def delay(self, key: RetryKey) -> float | None:
        """The last wait scheduled for ``key`` (None: not failing)."""
        entry = self._due.get(key)
        return entry[1] if entry else None
