"""What survives a restart: the ZooKeeper session to resume and the rewrites managed, in the
state file (sidecar/state.py), saved at most every few seconds. Owned by the loop thread."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from sidecar.loop.memory import Memory
from sidecar.model import RegistryNode
from sidecar.ownership import marker_from_state
from sidecar.plan import Remembered
from sidecar.report.events import Events
from sidecar.state import State, StateFile

# A storm of rewrites must not rewrite a large file for each pass.
SAVE_EVERY = 2.0


class Persistence:
    """The state file, locked for the life of the process (None: no state file)."""

    def __init__(
        self, path: Path | None, events: Events, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._events = events
        self._clock = clock
        self._file = StateFile(path) if path else None
        self.state = State()
        if self._file is not None:
            try:
                self._file.lock()
            except OSError as exc:
                events.connection("state_file", "unusable", problem=f"{exc}; a restart will "
                                  "not resume the ZooKeeper session")  # fmt: skip
                self._file = None
            else:
                self.state = self._file.load()
        # The session a restart tried to resume: its nodes and lease are ours to take over.
        self.earlier_session = self.state.session_id
        self._saved_at = float("-inf")
        self.pending = False

    def resume(self) -> tuple[int, bytes] | None:
        """The (session id, password) to try to resume."""
        return (self.state.session_id, self.state.password) if self.state.session_id else None

    def remembered(self, engine: str) -> list[Remembered]:
        """The rewrites an earlier run on this engine managed."""
        if self.state.engine != engine:
            return []
        found = []
        for path, (data, saved) in self.state.managed.items():
            parent, _, name = path.rpartition("/")
            marker = marker_from_state(saved)
            if marker is not None:
                found.append(Remembered(RegistryNode(parent, name, data, 0, 0), marker))
        return found

    def note_session(self, session: int, password: bytes, memory: Memory, engine: str) -> bool:
        """Record the session now in use; True if it is the one resumed from the file."""
        if session == self.state.session_id:
            return session == self.earlier_session
        self.state.session_id, self.state.password = session, password
        self.save(memory, engine, now=True)
        return False

    def save(self, memory: Memory, engine: str, now: bool = False) -> None:
        """Write the state file, at most every SAVE_EVERY seconds unless ``now``. What is not
        written yet is written by the loop when the time comes (see due), and at exit."""
        if self._file is None:
            return
        if not now and self._clock() < self._saved_at + SAVE_EVERY:
            self.pending = True
            return
        self.pending = False
        self._saved_at = self._clock()
        if engine:  # else the loop never started: keep what the file knew
            self.state.engine = engine
            self.state.managed = {
                r.node.path: (r.node.data, r.marker.to_state())
                for nodes in memory.managed.values()
                for r in nodes.values()
            }
        try:
            self._file.save(self.state)
        except OSError as exc:
            self._events.connection("state_file", "not_written", problem=str(exc))

    def due(self) -> float:
        """When a pending save is due (infinity if none)."""
        return self._saved_at + SAVE_EVERY if self.pending else float("inf")

    def forget_session(self, memory: Memory, engine: str) -> None:
        """The session was closed on purpose: the next run starts a new one."""
        self.state.session_id, self.state.password = 0, b""
        self.save(memory, engine, now=True)
