"""Caches bounded by memory, not by count: parsed node names and markers are cached by their
text, and a registry of long names must not multiply the sidecar's footprint."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# What one entry costs besides its key's text: the dict slot, the parsed value's objects.
ENTRY_OVERHEAD = 600


class SizedCache(Generic[K, V]):
    """A cache of one function of one argument holding at most ``budget`` bytes as ``cost``
    estimates them (a key's text, and what its value copies of it); the oldest entries go
    first. A result costing more than a sixteenth of the budget is computed but not kept.
    Exceptions are not cached.

    A hit is one dict lookup (atomic under the GIL, so no lock: it runs for every node of
    every pass); additions and evictions take the lock.
    """

    def __init__(self, function: Callable[[K], V], budget: int, cost: Callable[[K], int]) -> None:
        self._function = function
        self.budget = budget
        self._cost = cost
        self._entries: dict[K, tuple[V, int]] = {}
        self.used = 0
        self._lock = threading.Lock()

    def __call__(self, key: K) -> V:
        hit = self._entries.get(key)
        if hit is not None:
            return hit[0]
        value = self._function(key)
        cost = self._cost(key) + ENTRY_OVERHEAD
        if cost > self.budget // 16:
            return value
        with self._lock:
            if key not in self._entries:
                self._entries[key] = (value, cost)
                self.used += cost
            while self.used > self.budget:
                oldest = next(iter(self._entries))
                self.used -= self._entries.pop(oldest)[1]
        return value


def sized_cache(
    budget: int, cost: Callable[[Any], int]
) -> Callable[[Callable[[K], V]], SizedCache[K, V]]:
    """Decorator form of SizedCache (``cost`` takes the decorated function's argument)."""

    def wrap(function: Callable[[K], V]) -> SizedCache[K, V]:
        return SizedCache(function, budget, cost)

    return wrap
