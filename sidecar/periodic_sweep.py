"""The periodic sweep over every path, a slice at a time (pure): no pass re-reads the whole
registry at once (at 100,000 nodes that would hold every event back by seconds), and every
path is checked once every SWEEP_RESYNCS resyncs."""

from __future__ import annotations

SWEEP_RESYNCS = 60


def sweep_slice(everything: list[str], start: int) -> tuple[list[str], int]:
    """The next 1/SWEEP_RESYNCS of ``everything`` from ``start`` on, wrapping past the end, and
    where the one after begins; a registry that grows or shrinks meanwhile is still swept."""
    if not everything:
        return [], 0
    start %= len(everything)
    end = start + -(-len(everything) // SWEEP_RESYNCS)
    return everything[start:end] + everything[: max(0, end - len(everything))], end
