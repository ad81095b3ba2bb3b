"""A lease: an ephemeral node only its holder's session owns, taken over only when allowed."""

from __future__ import annotations

from collections.abc import Callable

from sidecar.protocols import Coordination


class Lease:
    """The lease at ``path``, held in one session at a time."""

    def __init__(self, coordination: Coordination, path: str) -> None:
        self._coordination = coordination
        self.path = path

    def hold(self, session: int, data: bytes, may_take: Callable[[int], bool]) -> int | None:
        """Hold the lease in ``session``: created with ``data`` when free, taken over from a
        holder ``may_take`` gives up (its session is gone, say), else left to its holder.
        Returns the holder afterwards (None: nobody); watched."""
        owner = self._coordination.owner_of(self.path)
        if owner != session:
            gone = owner is not None and may_take(owner)
            if owner is None or gone:
                self._coordination.acquire(self.path, data, owner if gone else None)
                owner = self._coordination.owner_of(self.path)
        return owner

    def holder_data(self) -> bytes:
        """What the lease's holder wrote in it (nothing when nobody holds it)."""
        return self._coordination.read_data(self.path) or b""

    def release(self) -> None:
        """Give the lease up (held by this session, or gone already)."""
        self._coordination.release(self.path)


def leases(coordination: Coordination, parent: str) -> dict[str, tuple[int, bytes]]:
    """The leases under ``parent``, watched: each name's holder session and data."""
    return {node.name: (node.owner, node.data) for node in coordination.nodes_under(parent)}
