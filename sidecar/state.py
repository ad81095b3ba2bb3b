"""The state file: the ZooKeeper session to resume.

Written atomically after each change, locked for the life of the process, so that a sidecar
restarted within the session timeout resumes its session (its nodes never vanish). What the
sidecar manages is recorded in ZooKeeper (sidecar/records.py); the rewrites an earlier version
kept here (``managed``) are read, and kept only until they are recorded there
(loop/persistence.py), never added to.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sidecar.files import open_private, read_regular
from sidecar.quoting import quote

# A state file larger than this is not one the sidecar wrote: refused, not read.
_LIMIT = 64 << 20


class StateFileBusy(Exception):
    """Another process holds the state file."""


@dataclass
class State:
    session_id: int = 0
    password: bytes = b""
    engine: str = ""
    # An earlier version's rewrites, until recorded in ZooKeeper: node path -> (node data,
    # the marker's state form: see Marker.to_state)
    managed: dict[str, tuple[bytes, dict[str, str]]] = field(default_factory=dict)


# ZooKeeper session ids are Java longs; kazoo packs them as signed 64-bit integers (a value
# outside that range kills its connection thread). ZooKeeper hands out 16-byte passwords.
_SESSION_IDS = range(-(2**63), 2**63)
_PASSWORD_BYTES = 16


class StateFile:
    """A JSON state file next to its lock file; both readable by their owner only (the file
    holds the session password)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock: int | None = None

    def lock(self) -> None:
        """Hold the lock until the process ends; raise StateFileBusy if another process has it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = open_private(self.path.with_name(self.path.name + ".lock"), os.O_RDWR)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock)
            raise StateFileBusy(f"another sidecar uses the state file {self.path}") from None
        self._lock = lock

    def load(self) -> tuple[State, str | None]:
        """The saved state, and what was wrong with the file if it could not all be used
        (None: nothing; a missing file is a first start, not a problem). Whatever part is
        unreadable is left out: a session that cannot be resumed, or a rewrite entry."""
        try:
            text = read_regular(self.path, _LIMIT).decode()
        except FileNotFoundError:
            return State(), None
        except (OSError, ValueError) as exc:
            return State(), f"state file {self.path}: {exc}"
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError) as exc:
            return State(), f"state file {self.path} is not JSON (truncated?): {exc}"
        if not isinstance(doc, dict):
            return State(), f"state file {self.path} is not a JSON object"
        problems: list[str] = []
        engine = doc.get("engine")
        state = State(engine=engine if isinstance(engine, str) else "")
        try:
            state.session_id, state.password = _session(doc)
        except ValueError as exc:
            problems.append(f"session not resumed: {exc}")
        state.managed, bad = _managed(doc.get("managed"))
        if bad:
            problems.append(f"{bad} rewrite entries unreadable")
        if not problems:
            return state, None
        return state, f"state file {self.path}: {'; '.join(problems)}"

    def save(self, state: State) -> None:
        doc: dict[str, object] = {
            "session_id": state.session_id,
            "password": state.password.hex(),
            "engine": state.engine,
        }
        if state.managed:  # an earlier version's, not recorded yet
            doc["managed"] = {
                path: {"data": base64.b64encode(data).decode(), "marker": marker}
                for path, (data, marker) in sorted(state.managed.items())
            }
        temporary = self.path.with_name(self.path.name + ".tmp")
        # Atomic (rename), not synced: what matters is surviving the process, not the host.
        with os.fdopen(open_private(temporary, os.O_WRONLY | os.O_TRUNC), "w") as out:
            json.dump(doc, out)
        temporary.replace(self.path)


def _session(doc: dict[str, Any]) -> tuple[int, bytes]:
    """The session id and password to resume, (0, b"") for none; ValueError if unusable."""
    session, password = doc.get("session_id", 0), doc.get("password", "")
    if not isinstance(session, int) or isinstance(session, bool) or session not in _SESSION_IDS:
        raise ValueError(f"session id {quote(session)} is not a 64-bit ZooKeeper session id")
    if session == 0:
        return 0, b""
    try:
        secret = bytes.fromhex(password) if isinstance(password, str) else b""
    except ValueError:
        secret = b""
    if len(secret) != _PASSWORD_BYTES:
        # Never quoted: it is a secret.
        raise ValueError(f"the password is not {_PASSWORD_BYTES} bytes in hex")
    return session, secret


def _managed(doc: object) -> tuple[dict[str, tuple[bytes, dict[str, str]]], int]:
    """The rewrite entries that can be read, and how many could not."""
    if not isinstance(doc, dict):
        return {}, 0 if doc is None else 1
    managed: dict[str, tuple[bytes, dict[str, str]]] = {}
    for path, entry in doc.items():
        marker = entry.get("marker") if isinstance(entry, dict) else None
        data = entry.get("data") if isinstance(entry, dict) else None
        if not isinstance(data, str) or not isinstance(marker, dict):
            continue
        if not all(isinstance(v, str) for v in marker.values()):
            continue
        try:
            managed[path] = (base64.b64decode(data, validate=True), marker)
        except ValueError:
            continue
    return managed, len(doc) - len(managed)
