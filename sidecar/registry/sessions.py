"""Where ZooKeeper servers are asked which client address each session connects from.

Each server knows only its own connections, so every server of the connect string is asked:
first with the ``cons`` four-letter word on the client port, then, if the server does not
allow it, with the AdminServer ``connections`` command.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import time
import urllib.request
from typing import TypeGuard

from sidecar.model import Origin
from sidecar.syntax import servers

_CONS_LINE = re.compile(r"^\s*/(?P<address>.+):\d+\[\d+\]\((?P<stats>.*)\)\s*$")
_SESSION = re.compile(r"(?:^|,)sid=0x(?P<sid>[0-9a-fA-F]{1,16})(?:,|$)")


class NotAllowed(Exception):
    """The server does not run this command for us."""


class SessionOrigins:
    """Asks the servers of one ensemble where sessions connect from."""

    def __init__(self, connect_string: str, admin_port: int, timeout: float = 1.0) -> None:
        self._servers = servers(connect_string)
        self._admin_port = admin_port
        self._timeout = timeout

    def fetch(self) -> dict[int, Origin] | None:
        """Session id -> origin over all servers that answer; None if none of them tells."""
        origins: dict[int, Origin] = {}
        told = False
        for host, port in self._servers:
            try:
                found = self._from_cons(host, port)
            except NotAllowed:
                try:
                    found = self._from_admin(host)
                except NotAllowed:
                    continue
            except Exception:
                continue
            origins.update((session, Origin(address, host)) for session, address in found.items())
            told = True
        return origins if told else None

    def _from_cons(self, host: str, port: int) -> dict[int, str]:
        deadline = time.monotonic() + 2 * self._timeout
        with socket.create_connection((host, port), timeout=self._timeout) as conn:
            conn.sendall(b"cons")
            chunks = []
            while time.monotonic() < deadline and (chunk := conn.recv(65536)):
                chunks.append(chunk)
        text = b"".join(chunks).decode("utf-8", errors="replace")
        if "not in the whitelist" in text or "not executed" in text:
            raise NotAllowed(text.strip())
        return parse_cons(text)

    def _from_admin(self, host: str) -> dict[int, str]:
        if not self._admin_port:
            raise NotAllowed("AdminServer disabled by configuration")
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{self._admin_port}/commands/connections"
        try:
            with urllib.request.urlopen(url, timeout=self._timeout) as response:
                return parse_admin_connections(json.load(response))
        except Exception as exc:
            raise NotAllowed(str(exc)) from exc


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


def _normal(address: str) -> str:
    address = address.strip("[]/")
    try:
        return ipaddress.ip_address(address).compressed
    except ValueError:
        return address
