"""What survives a restart on disk: only the ZooKeeper session to resume (the state file,
sidecar/state.py). What the sidecar manages is recorded in ZooKeeper itself (see
sidecar/records.py); the rewrites an earlier version kept in the state file are read once,
to be recorded. Owned by the loop thread."""

from __future__ import annotations

from pathlib import Path

from sidecar.model import RegistryNode
from sidecar.ownership import marker_from_state
from sidecar.plan import Remembered
from sidecar.report.events import Events
from sidecar.state import State, StateFile


class Persistence:
    """The state file, locked for the life of the process (None: no state file)."""

    def __init__(self, path: Path | None, events: Events) -> None:
        self._events = events
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
                self.state, problem = self._file.load()
                if problem:
                    events.connection("state_file", "unreadable", problem=problem)
        # The session a restart tried to resume: its nodes and lease are ours to take over.
        self.earlier_session = self.state.session_id

    def resume(self) -> tuple[int, bytes] | None:
        """The (session id, password) to try to resume."""
        return (self.state.session_id, self.state.password) if self.state.session_id else None

    def remembered(self, engine: str) -> list[Remembered]:
        """The rewrites an earlier version kept in the state file for this engine."""
        if self.state.engine != engine:
            return []
        found = []
        for path, (data, saved) in self.state.managed.items():
            parent, _, name = path.rpartition("/")
            marker = marker_from_state(saved)
            if marker is not None:
                found.append(Remembered(RegistryNode(parent, name, data, 0, 0), marker))
        return found

    def note_session(self, session: int, password: bytes) -> bool:
        """Record the session now in use; True if it is the one resumed from the file."""
        if session == self.state.session_id:
            return session == self.earlier_session
        self.state.session_id, self.state.password = session, password
        self._save()
        return False

    def recorded(self) -> None:
        """Everything an earlier version kept here is recorded in ZooKeeper now."""
        if self.state.managed:
            self.state.managed = {}
            self._save()

    def forget_session(self) -> None:
        """The session was closed on purpose: the next run starts a new one."""
        self.state.session_id, self.state.password = 0, b""
        self._save()

    def _save(self) -> None:
        if self._file is None:
            return
        try:
            self._file.save(self.state)
        except OSError as exc:
            self._events.connection("state_file", "not_written", problem=str(exc))
