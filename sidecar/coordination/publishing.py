"""Publishing: persistent nodes written whole when their data changes, failed ones retried."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from sidecar.protocols import Coordination

# A group that could not be written is tried again after this, twice as late each time it
# fails again, up to the last.
_FIRST_RETRY, _LAST_RETRY = 0.5, 30.0


class Publisher:
    """What was published, and when each group whose write failed is due again."""

    def __init__(self, coordination: Coordination) -> None:
        self._coordination = coordination
        self._published: dict[str, bytes] = {}  # node -> data, as last written
        self._retries: dict[str, tuple[float, float]] = {}  # group -> due at, last delay

    def due(self, group: str, now: float) -> bool:
        """Whether ``group`` may be written now (no failed write waits for its retry)."""
        return self._retries.get(group, (0.0, 0.0))[0] <= now

    def publish(
        self, groups: Mapping[str, Mapping[str, bytes]], now: float
    ) -> tuple[int, dict[str, str]]:
        """Write every node of ``groups`` (group -> node -> data) whose data changed since
        published, all at once. A node that cannot be written (no permission, anything)
        holds back no other. Returns how many nodes were written, and why each group that
        failed did (one of its nodes' problem)."""
        writes: dict[str, bytes] = {}
        group_of: dict[str, str] = {}
        for group, nodes in groups.items():
            for path, data in nodes.items():
                if self._published.get(path) != data:
                    writes[path], group_of[path] = data, group
        failed = self._coordination.put(writes)
        self._published.update((p, d) for p, d in writes.items() if p not in failed)
        failing = {group_of[path]: problem for path, problem in failed.items()}
        for group in groups:
            if group in failing:
                _, delay = self._retries.get(group, (0.0, _FIRST_RETRY / 2))
                delay = min(delay * 2, _LAST_RETRY)
                self._retries[group] = (now + delay, delay)
            else:
                self._retries.pop(group, None)
        return len(writes) - len(failed), failing

    def next_retry(self, groups: Collection[str]) -> float:
        """When the earliest of ``groups`` whose write failed is due again (infinity: none)."""
        return min(
            (at for g, (at, _) in self._retries.items() if g in groups), default=float("inf")
        )
