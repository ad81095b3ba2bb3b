"""Caches of parsed names and markers are bounded by memory, not by count."""

from __future__ import annotations

import gc
import tracemalloc

from sidecar.memo import ENTRY_OVERHEAD, SizedCache
from sidecar.model import Endpoint
from sidecar.ownership import Marker, read_marker


def test_a_cache_keeps_within_its_budget_oldest_out_first() -> None:
    """Entries are kept while they fit; the oldest go first; a result too large to be worth
    a sixteenth of the budget is computed every time and never kept."""
    calls: list[str] = []

    def upper(text: str) -> str:
        calls.append(text)
        return text.upper()

    cache = SizedCache(upper, budget=16 * (ENTRY_OVERHEAD + 100), cost=len)
    keys = [f"{i:03d}" + "x" * 97 for i in range(40)]
    for key in keys:
        assert cache(key) == key.upper()
    assert cache.used <= cache.budget
    calls.clear()
    cache(keys[-1])  # kept
    cache(keys[0])  # evicted long ago
    assert calls == [keys[0]]
    huge = "y" * cache.budget
    cache(huge)
    cache(huge)
    assert calls[-2:] == [huge, huge]


def test_markers_of_long_names_keep_a_bounded_amount_of_memory() -> None:
    """Reading 40,000 different markers of 1 KB originals keeps about the cache's budget
    (16 MiB), not every marker (65,536 of them held 184 MiB before)."""
    gc.collect()
    tracemalloc.start()
    try:
        for index in range(40_000):
            original = f"dubbo%3A%2F%2F10.0.0.1%3A20880%2Fsvc{index}%3F" + "p" * 1000
            data = Marker(original, Endpoint("10.0.0.1", 20880), "c" * 64, "E", index).encode()
            assert read_marker(data) is not None
        gc.collect()
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kept < 24 << 20
