"""The state file: the ZooKeeper session to resume and the rewrites this sidecar manages.

Written atomically after each change, locked for the life of the process, so that a sidecar
restarted within the session timeout resumes its session (its nodes never vanish), and one
restarted later re-creates the rewrites whose containers still serve.
"""

from __future__ import annotations

import base64
import fcntl
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


class StateFileBusy(Exception):
    """Another process holds the state file."""


@dataclass
class State:
    session_id: int = 0
    password: bytes = b""
    engine: str = ""
    # node path -> (node data, the marker's state form: see Marker.to_state)
    managed: dict[str, tuple[bytes, dict[str, str]]] = field(default_factory=dict)


class StateFile:
    """A JSON state file next to its lock file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock: IO[bytes] | None = None

    def lock(self) -> None:
        """Hold the lock until the process ends; raise StateFileBusy if another process has it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.with_name(self.path.name + ".lock").open("ab")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise StateFileBusy(f"another sidecar uses the state file {self.path}") from None
        self._lock = lock

    def load(self) -> State:
        """The saved state; an empty one if the file is missing or unreadable."""
        try:
            doc = json.loads(self.path.read_text())
            return State(
                session_id=int(doc["session_id"]),
                password=bytes.fromhex(doc["password"]),
                engine=str(doc["engine"]),
                managed={
                    path: (base64.b64decode(entry["data"]), dict(entry["marker"]))
                    for path, entry in doc["managed"].items()
                },
            )
        except (OSError, ValueError, KeyError, TypeError):
            return State()

    def save(self, state: State) -> None:
        doc = {
            "session_id": state.session_id,
            "password": state.password.hex(),
            "engine": state.engine,
            "managed": {
                path: {"data": base64.b64encode(data).decode(), "marker": marker}
                for path, (data, marker) in sorted(state.managed.items())
            },
        }
        temporary = self.path.with_name(self.path.name + ".tmp")
        # Atomic (rename), not synced: what matters is surviving the process, not the host.
        with temporary.open("w") as out:
            json.dump(doc, out)
        temporary.replace(self.path)
