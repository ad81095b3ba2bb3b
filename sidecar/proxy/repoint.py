"""The app's registrations as the proxy created them, per session, so that they follow a change
of the app's mapping (a port published elsewhere, another advertised host).

Within a second of the change each is created at its new published name and deleted at the
old one, in one transaction sent on one of the app's own connections: the node stays the
app's (in its session, with its ACL and flags), and consumers never see it missing. The app's
own requests name it by the new mapping from then on, so its ``exists``, ``getData``,
``setData`` and ``delete`` keep working. A registration that no longer maps (its port is no
longer published) is deleted: it never stays at an address that no longer leads to the app.
Sequential and TTL nodes are left as they are (a name the server chose cannot be made again).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, replace

from sidecar.proxy import jute
from sidecar.proxy.names import Names, Renamed

_SEQUENTIAL = 2
_INT = struct.Struct(">i")


@dataclass(frozen=True)
class Registration:
    """One of the app's nodes as created: its name and data as the app gave them, where it
    was published, and the ACL (encoded) and flags it was created with."""

    asked: str
    sent: str
    data: bytes | None
    acl: bytes
    flags: int

    @property
    def movable(self) -> bool:
        return not self.flags & _SEQUENTIAL


class Registrations:
    """Per session, the app's nodes the proxy created and saw no delete of. Sessions whose
    connections are all gone are let go after their timeout (see ``forget_idle``)."""

    def __init__(self) -> None:
        self._by_session: dict[int, dict[str, Registration]] = {}
        self._idle_since: dict[int, tuple[float, float]] = {}  # session -> since, timeout

    def created(self, session: int, registration: Registration) -> None:
        if registration.movable:
            self._by_session.setdefault(session, {})[registration.asked] = registration

    def data_set(self, session: int, asked: str, data: bytes | None) -> None:
        found = self._by_session.get(session, {}).get(asked)
        if found is not None:
            self._by_session[session][asked] = replace(found, data=data)

    def deleted(self, session: int, asked: str) -> None:
        self._by_session.get(session, {}).pop(asked, None)

    def moved(self, session: int, names: Names) -> list[tuple[Registration, Renamed | None]]:
        """The session's registrations whose published name is not the mapping's now, each
        with where it goes (None: nowhere, the endpoint no longer maps)."""
        found: list[tuple[Registration, Renamed | None]] = []
        for registration in list(self._by_session.get(session, {}).values()):
            now = names.rename(registration.asked, wait=False)
            if isinstance(now, Renamed):
                if now.sent != registration.sent:
                    found.append((registration, now))
            elif names.mapper.ready():
                found.append((registration, None))
        return found

    def repointed(self, session: int, registration: Registration, now: Renamed | None) -> None:
        """The move went through (None: the registration was deleted)."""
        nodes = self._by_session.get(session, {})
        if now is None:
            nodes.pop(registration.asked, None)
        else:
            nodes[registration.asked] = replace(registration, sent=now.sent)

    def connected(self, session: int) -> None:
        self._idle_since.pop(session, None)

    def disconnected(self, session: int, since: float, timeout: float) -> None:
        self._idle_since[session] = (since, timeout)

    def forget_idle(self, now: float) -> None:
        """Let go of sessions no connection came back for within twice their timeout."""
        for session, (since, timeout) in list(self._idle_since.items()):
            if now - since > 2 * timeout:
                del self._idle_since[session]
                self._by_session.pop(session, None)

    def sessions(self) -> Iterable[int]:
        return list(self._by_session)


def move(xid: int, registration: Registration, now: Renamed | None, names: Names) -> bytes:
    """The request that moves a registration: one multi that creates it at its new name and
    deletes the old (or only the delete, when it goes nowhere)."""
    delete = jute.encode_string(registration.sent) + _INT.pack(-1)
    if now is None:
        return jute.frame(struct.pack(">ii", xid, jute.DELETE) + delete)
    data, _ = names.data(now, registration.data)
    create = (
        jute.encode_string(now.sent) + jute.encode_buffer(data) + registration.acl
        + _INT.pack(registration.flags)
    )  # fmt: skip
    body = (
        jute.encode_multi_header(jute.CREATE, False, -1) + create
        + jute.encode_multi_header(jute.DELETE, False, -1) + delete
        + jute.encode_multi_header(-1, True, -1)
    )  # fmt: skip
    return jute.frame(struct.pack(">ii", xid, jute.MULTI) + body)
