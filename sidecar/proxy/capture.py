"""Transparent capture: the app's connections to ZooKeeper redirected to the proxy (iptables and
ip6tables).

In the network namespace the proxy shares with the app, a chain in ``nat OUTPUT`` REDIRECTs
TCP connections to the ZooKeeper ports to the proxy's port, except the proxy's own upstream
connections, which carry :data:`MARK` (``SO_MARK``). ``SO_ORIGINAL_DST`` then tells the proxy
which server the app dialled. A redirected connection goes to the loopback address of its
family (127.0.0.1, ::1), where the proxy listens. Installing needs ``CAP_NET_ADMIN`` and the
``iptables`` command (``ip6tables`` for IPv6).

The rules fail closed: they stay when the sidecar stops, for whatever reason, so the app's
connections are refused until a proxy listens again and never reach ZooKeeper unrewritten.
A sidecar that starts again replaces them (one chain, one jump to it); ``dubbo-sidecar
uncapture`` removes them.
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

CHAIN = "DUBBO_SIDECAR_PROXY"
MARK = 0x2181  # on the proxy's own upstream sockets; nothing else in the namespace may use it
SO_MARK = getattr(socket, "SO_MARK", 36)
SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h
IP6T_SO_ORIGINAL_DST = 80  # linux/netfilter_ipv6/ip6_tables.h
_SOCKADDR_IN = struct.Struct("!2xH4s8x")
_CHECK_EVERY = 5.0
_SOCKADDR_IN6 = struct.Struct("!2xH4x16s4x")


class CaptureError(Exception):
    """Capture could not be set up; the message says why, in one line."""


class Capture:
    """The redirect of ``ports`` to ``proxy_port``, in this network namespace, for IPv4 and,
    with ``ipv6``, IPv6."""

    def __init__(self, ports: Sequence[int], proxy_port: int, ipv6: bool = False) -> None:
        self.ports = tuple(ports)
        self.proxy_port = proxy_port
        self._commands = ["iptables", *(["ip6tables"] if ipv6 else [])]
        self._checked = (float("-inf"), "")  # when, and what was missing

    def install(self) -> None:
        """Install the rules (replacing a chain left by an earlier run)."""
        for command in self._commands:
            found = shutil.which(command)
            if found is None:
                raise CaptureError(f"transparent capture needs the {command} command, which is "
                                   "missing")  # fmt: skip
            self._install(found)

    def _install(self, iptables: str) -> None:
        created = _run(iptables, "-N", CHAIN, check=False)
        if created.returncode != 0:
            if "exists" not in created.stderr:
                raise CaptureError(_failure("-N", created))
            _run(iptables, "-F", CHAIN)  # left by an earlier run: replaced
        _run(iptables, "-A", CHAIN, "-m", "mark", "--mark", str(MARK), "-j", "RETURN")
        for port in self.ports:
            _run(iptables, "-A", CHAIN, "-p", "tcp", "--dport", str(port), "-j", "REDIRECT",
                 "--to-ports", str(self.proxy_port))  # fmt: skip
        if _run(iptables, "-C", "OUTPUT", "-p", "tcp", "-j", CHAIN, check=False).returncode != 0:
            _run(iptables, "-A", "OUTPUT", "-p", "tcp", "-j", CHAIN)

    def missing(self) -> str:
        """Why the rules are not (all) in place ("": they are), as checked at most every few
        seconds (readiness asks at each probe)."""
        now = time.monotonic()
        if now - self._checked[0] > _CHECK_EVERY:
            self._checked = (now, self._check())
        return self._checked[1]

    def _check(self) -> str:
        for command in self._commands:
            found = shutil.which(command)
            if found is None:
                return f"{command} is missing"
            try:
                listed = _run(found, "-S", CHAIN, check=False)
                jump = _run(found, "-C", "OUTPUT", "-p", "tcp", "-j", CHAIN, check=False)
            except CaptureError as exc:
                return str(exc)
            redirects = listed.stdout.count("--to-ports")
            if listed.returncode != 0 or jump.returncode != 0 or redirects < len(self.ports):
                return f"the capture rules ({command} nat {CHAIN}) are missing"
        return ""


def remove() -> list[str]:
    """Remove the capture rules of this network namespace (whatever of them exists), for
    IPv4 and IPv6; the commands that could not run."""
    problems = []
    for command in ("iptables", "ip6tables"):
        found = shutil.which(command)
        if found is None:
            problems.append(f"{command} is missing")
            continue
        while _run(found, "-D", "OUTPUT", "-p", "tcp", "-j", CHAIN, check=False).returncode == 0:
            pass
        _run(found, "-F", CHAIN, check=False)
        _run(found, "-X", CHAIN, check=False)
    return problems


def _run(iptables: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = [iptables, "-w", "5", "-t", "nat", *args]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CaptureError(f"{Path(iptables).name} could not run: {exc}") from None
    if check and done.returncode != 0:
        raise CaptureError(_failure(args[0], done))
    return done


def _failure(command: str, done: subprocess.CompletedProcess[str]) -> str:
    detail = (done.stderr.strip().splitlines() or ["no message"])[0][:200]
    return (
        f"cannot install the capture rules (needs CAP_NET_ADMIN): iptables {command} failed: "
        f"{detail}"
    )


def original_destination(sock: socket.socket) -> tuple[str, int] | None:
    """Where a redirected connection was going (None if that cannot be told)."""
    try:
        if sock.family == socket.AF_INET:
            raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, _SOCKADDR_IN.size)
            port, address = _SOCKADDR_IN.unpack(raw)
            return str(ipaddress.IPv4Address(address)), port
        if sock.family == socket.AF_INET6:
            raw = sock.getsockopt(socket.IPPROTO_IPV6, IP6T_SO_ORIGINAL_DST, _SOCKADDR_IN6.size)
            port, address = _SOCKADDR_IN6.unpack(raw)
            mapped = ipaddress.IPv6Address(address)
            return str(mapped.ipv4_mapped or mapped), port
    except OSError:
        return None
    return None


def mark(sock: socket.socket) -> None:
    """Exempt ``sock``'s connection from the capture."""
    sock.setsockopt(socket.SOL_SOCKET, SO_MARK, MARK)
