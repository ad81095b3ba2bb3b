"""Membership: a member node, ephemeral, held in this session, its data kept current."""

from __future__ import annotations

from sidecar.protocols import Coordination


class Membership:
    """The member node at ``path``: one member per path, whichever session held it before."""

    def __init__(self, coordination: Coordination, path: str) -> None:
        self._coordination = coordination
        self.path = path
        self._written: tuple[int, bytes] | None = None  # the data, as of which session

    def keep(self, session: int, data: bytes) -> str:
        """Hold the member node in ``session`` with ``data`` (taken over from any other
        session; a new session or new data writes it); why it cannot be ("": it is)."""
        if self._written == (session, data):
            return ""
        coordination = self._coordination
        if self._written is None or self._written[0] != session:
            owner = coordination.owner_of(self.path)
            taken = owner if owner != session else None
            if not coordination.acquire(self.path, data, taken):
                return "cannot be held in this session"
        if coordination.read_data(self.path) != data:
            failed = coordination.put({self.path: data})
            if failed:
                return failed[self.path]
        self._written = (session, data)
        return ""
