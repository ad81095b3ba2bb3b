"""Where ZooKeeper servers are asked which client address each session connects from.

Each server knows only its own connections, so every server of the ensemble is asked: every
address each name of the connect string resolves to, and every member the servers publish
(the ``conf`` four-letter word's ``server.N=`` lines, where allowed). Each is asked with the
``cons`` four-letter word, or, if it does not allow that, the AdminServer ``connections``
command; an answer is read whole within one deadline, or the server did not answer. The
result says which servers did not: a proof is complete, or it says what is unknown.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeGuard

from sidecar.bounded_requests import ask, http_request
from sidecar.hosts import servers
from sidecar.model import Origin, Origins
from sidecar.quoting import shorten
from sidecar.tls import ClientTls

_CONS_LINE = re.compile(r"^\s*/(?P<address>.+):\d+\[\d+\]\((?P<stats>.*)\)\s*$")
_SESSION = re.compile(r"(?:^|,)sid=0x(?P<sid>[0-9a-fA-F]{1,16})(?:,|$)")
# server.N=host:quorum port:election port[:role][;[client address:]client port]
_MEMBER = re.compile(
    r"^server\.\d+=(?P<host>\[[^\]]+\]|[^:;\s]+):\d+:\d+(?::\w+)?"
    r"(?:;(?:(?P<client_host>\[[^\]]+\]|[^:;\s]+):)?(?P<client_port>\d{1,5}))?\s*$"
)
_WILDCARDS = frozenset({"0.0.0.0", "::", "[::]"})
_NOT_SERVING = "not currently serving requests"
# ``cons`` of a server with 100,000 connections is about 20 MB.
_ANSWER_LIMIT = 64 << 20
_ASKED_AT_ONCE = 8


class NotAllowed(Exception):
    """The server does not run this command for us."""


@dataclass(frozen=True)
class _Answer:
    """One server's answer: its sessions, or why there are none."""

    sessions: dict[int, str] | None
    problem: str = ""
    refused: bool = False  # by the server's configuration, not by a failure


class SessionOrigins:
    """Asks the servers of one ensemble where sessions connect from."""

    def __init__(
        self,
        connect_string: str,
        admin_port: int,
        timeout: float = 3.0,
        tls: ClientTls | None = None,
    ) -> None:
        """``timeout``: for each server, the time to answer everything it is asked; ``tls``:
        the servers are asked over TLS (the four-letter words on their secure client ports,
        which ZooKeeper answers there as on plaintext ones; the AdminServer over HTTPS)."""
        self._servers = servers(connect_string)
        self._admin_port = admin_port
        self._timeout = timeout
        self._tls = tls
        self._names: dict[tuple[str, int], str] = {}  # the name each address was resolved from
        self._executor: ThreadPoolExecutor | None = None

    def fetch(self) -> Origins | None:
        """Where every session connects from, and which servers did not say; None if every
        server refuses to say (then nothing can be proven either way)."""
        unresolved: list[str] = []
        answers: dict[tuple[str, int], _Answer] = {}
        targets = _resolved(self._servers, unresolved, self._names)
        pool = self._pool()
        # The members are the ensemble's: one server that publishes them is asked, while
        # every server is asked for its connections.
        members = pool.submit(self._members, targets) if targets else None
        while targets:
            answers.update(zip(targets, pool.map(self._ask, targets), strict=True))
            found, members = (members.result() if members else []), None
            targets = [t for t in _resolved(found, unresolved, self._names) if t not in answers]
        if answers and all(answer.refused for answer in answers.values()):
            return None
        sessions: dict[int, Origin] = {}
        unanswered = list(dict.fromkeys(unresolved))
        for (address, port), answer in answers.items():
            if answer.sessions is None:
                unanswered.append(f"{_shown(address)}:{port} {answer.problem}")
                continue
            sessions.update(
                (sid, Origin(client, address)) for sid, client in answer.sessions.items()
            )
        return Origins(sessions, tuple(unanswered))

    def _pool(self) -> ThreadPoolExecutor:
        """Threads kept for the next fetch (starting threads was much of a fetch's cost)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                _ASKED_AT_ONCE, thread_name_prefix="session-origins"
            )
        return self._executor

    def _ask(self, target: tuple[str, int]) -> _Answer:
        address, port = target
        deadline = time.monotonic() + self._timeout
        try:
            return _Answer(self._from_cons(address, port, deadline))
        except NotAllowed:
            try:
                return _Answer(self._from_admin(address, deadline, self._names.get(target)))
            except NotAllowed as exc:
                return _Answer(None, f"does not tell ({shorten(str(exc), 80)})", refused=True)
            except (OSError, ValueError) as exc:
                return _Answer(None, f"did not answer: {shorten(str(exc), 120)}")
        except (OSError, ValueError) as exc:
            return _Answer(None, f"did not answer: {shorten(str(exc), 120)}")

    def _members(self, targets: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """The ensemble's members as the first server that publishes them says (``conf``);
        none if none does: membership is a bonus (the connect string's servers are asked)."""
        deadline = time.monotonic() + self._timeout
        for address, port in targets:
            try:
                return parse_members(self._word(address, port, b"conf", deadline), port)
            except (OSError, ValueError):
                continue
        return []

    def _from_cons(self, address: str, port: int, deadline: float) -> dict[int, str]:
        text = self._word(address, port, b"cons", deadline)
        if "not in the whitelist" in text or "not executed" in text:
            raise NotAllowed(text.strip())
        if _NOT_SERVING in text:
            # Between leaders (or without a quorum) a server lists no connection at all: that
            # says nothing about where its clients are.
            raise OSError("not serving requests now")
        return parse_cons(text)

    def _word(self, address: str, port: int, word: bytes, deadline: float) -> str:
        tls, name = self._tls, self._names.get((address, port), address)
        secure = (lambda plain: tls.wrap(plain, name)) if tls else None
        answer = ask(address, port, word, _remaining(deadline), _ANSWER_LIMIT, secure)
        return answer.decode("utf-8", errors="replace")

    def _from_admin(self, address: str, deadline: float, name: str | None) -> dict[int, str]:
        """``name``: the name ``address`` was resolved from, which its certificate gives."""
        if not self._admin_port:
            raise NotAllowed("AdminServer disabled by configuration")
        scheme = "https" if self._tls else "http"
        url = f"{scheme}://{_shown(address)}:{self._admin_port}/commands/connections"
        try:
            context = self._tls.context()[0] if self._tls else None
            answer = http_request(
                url, _remaining(deadline), _ANSWER_LIMIT, context=context, server_name=name
            )
        except TimeoutError:
            raise  # a server that is too slow did not answer; one refusing does not tell
        except OSError as exc:
            raise NotAllowed(f"AdminServer: {exc}") from None
        if answer.status != 200:
            raise NotAllowed(f"AdminServer: HTTP {answer.status}")
        try:
            return parse_admin_connections(json.loads(answer.body))
        except RecursionError:
            raise ValueError("AdminServer: not a connections answer") from None


def _remaining(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("no time left")
    return remaining


def _resolved(
    hosts: list[tuple[str, int]], unresolved: list[str], names: dict[tuple[str, int], str]
) -> list[tuple[str, int]]:
    """Every (address, port) the hosts resolve to, in order, once each; what cannot be
    resolved is added to ``unresolved``, the name each was resolved from to ``names``."""
    found: dict[tuple[str, int], None] = {}
    for host, port in hosts:
        try:
            infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            unresolved.append(f"{_shown(host)}:{port} cannot be resolved ({exc})")
            continue
        for info in infos:
            target = (_normal(str(info[4][0])), port)
            found.setdefault(target, None)
            names.setdefault(target, host.strip("[]"))
    return list(found)


def parse_members(text: str, default_port: int) -> list[tuple[str, int]]:
    """The client address of each ensemble member in a ``conf`` answer (or the data of
    ``/zookeeper/config``): ``server.N=`` lines. A member whose client port is not published
    (a static ``clientPort``) is assumed to use ``default_port``, the asked server's."""
    members = []
    for line in text.splitlines():
        match = _MEMBER.match(line.strip())
        if match is None:
            continue
        host = match["client_host"]
        if host is None or host in _WILDCARDS:
            host = match["host"]
        port = int(match["client_port"]) if match["client_port"] else default_port
        if 0 < port < 65536:
            members.append((host.strip("[]"), port))
    return members


def parse_cons(text: str) -> dict[int, str]:
    """Sessions and client addresses from a ``cons`` answer (connections without one skipped)."""
    origins = {}
    for line in text.splitlines():
        match = _CONS_LINE.match(line)
        session = match and _SESSION.search(match["stats"])
        if match and session:
            # cons prints a session id as Java's unsigned hex; ZooKeeper's stats (and the
            # AdminServer) carry it as a signed long.
            sid = int(session["sid"], 16)
            origins[sid - 2**64 if sid >= 2**63 else sid] = _normal(match["address"])
    return origins


def parse_admin_connections(doc: object) -> dict[int, str]:
    """Sessions and client addresses from the AdminServer's ``connections`` JSON; raise
    ValueError for anything else."""
    if not isinstance(doc, dict):
        raise ValueError("not a connections answer")
    connections = doc.get("connections")
    secure = doc.get("secure_connections") or []
    if not isinstance(connections, list) or not isinstance(secure, list):
        raise ValueError("not a connections answer")
    origins = {}
    for connection in connections + secure:
        if not isinstance(connection, dict):
            continue
        session = connection.get("session_id")
        address = connection.get("remote_socket_address")
        if _is_session(session) and isinstance(address, str) and address:
            origins[session] = _normal(address.rpartition(":")[0])
    return origins


def _is_session(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63


def _shown(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _normal(address: str) -> str:
    address = address.strip("[]/")
    try:
        return ipaddress.ip_address(address).compressed
    except ValueError:
        return address
