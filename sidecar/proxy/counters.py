"""What the proxy counts as it relays (the operations listener exports it as metrics: see
``ops/metrics.py``, which implements this protocol)."""

from __future__ import annotations

from typing import Protocol


class Counters(Protocol):
    """Told of every connection, held and refused request, rewrite and relayed byte."""

    def opened(self) -> None: ...

    def closed(self, why: str) -> None:
        """``why``: client, server, no-upstream, malformed, budget, stopped."""
        ...

    def held(self) -> None: ...

    def refused(self) -> None: ...

    def rewritten(self, op: str) -> None: ...

    def relayed(self, direction: str, size: int) -> None:
        """``direction``: requests (client to server) or replies."""
        ...


class NoCounters:
    """Counts nothing (a proxy without an operations listener, tests)."""

    def opened(self) -> None:
        return

    def closed(self, why: str) -> None:
        return

    def held(self) -> None:
        return

    def refused(self) -> None:
        return

    def rewritten(self, op: str) -> None:
        return

    def relayed(self, direction: str, size: int) -> None:
        return


def why_closed(reason: str) -> str:
    """The kind of a connection's end, from its reason (a bounded set of metric labels)."""
    for prefix, why in (
        ("client", "client"), ("server", "server"), ("no upstream", "no-upstream"),
        ("request: buffers over", "budget"), ("proxy stopped", "stopped"),
    ):  # fmt: skip
        if reason.startswith(prefix):
            return why
    return "malformed"
