"""Transparent capture: the app's connections to ZooKeeper redirected to the proxy (iptables).

In the network namespace the proxy shares with the app, a chain in ``nat OUTPUT`` REDIRECTs
TCP connections to the ZooKeeper ports to the proxy's port, except the proxy's own upstream
connections, which carry :data:`MARK` (``SO_MARK``). ``SO_ORIGINAL_DST`` then tells the proxy
which server the app dialled. Installing needs ``CAP_NET_ADMIN`` and the ``iptables``
command. The rules are removed on :meth:`Capture.remove`; a proxy killed before that leaves
them, so the app's connections are refused until a proxy listens again — they never reach
ZooKeeper unrewritten.
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
import struct
import subprocess
from collections.abc import Sequence

CHAIN = "DUBBO_SIDECAR_PROXY"
MARK = 0x2181  # on the proxy's own upstream sockets; nothing else in the namespace may use it
SO_MARK = getattr(socket, "SO_MARK", 36)
SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h
_SOCKADDR_IN = struct.Struct("!2xH4s8x")


class CaptureError(Exception):
    """Capture could not be set up; the message says why, in one line."""


class Capture:
    """The redirect of ``ports`` to ``proxy_port``, in this network namespace."""

    def __init__(self, ports: Sequence[int], proxy_port: int) -> None:
        self.ports = tuple(ports)
        self.proxy_port = proxy_port
        self._iptables = ""

    def install(self) -> None:
        """Install the rules (replacing a chain left by an earlier run)."""
        found = shutil.which("iptables")
        if found is None:
            raise CaptureError("transparent capture needs the iptables command, which is missing")
        self._iptables = found
        created = self._run("-N", CHAIN, check=False)
        if created.returncode != 0:
            if "exists" not in created.stderr:
                raise CaptureError(_failure("-N", created))
            self._run("-F", CHAIN)  # left by a proxy that was killed
        self._run("-A", CHAIN, "-m", "mark", "--mark", str(MARK), "-j", "RETURN")
        for port in self.ports:
            self._run("-A", CHAIN, "-p", "tcp", "--dport", str(port), "-j", "REDIRECT",
                      "--to-ports", str(self.proxy_port))  # fmt: skip
        if self._run("-C", "OUTPUT", "-p", "tcp", "-j", CHAIN, check=False).returncode != 0:
            self._run("-A", "OUTPUT", "-p", "tcp", "-j", CHAIN)

    def remove(self) -> None:
        """Remove the rules (whatever of them exists)."""
        if not self._iptables:
            return
        while self._run("-D", "OUTPUT", "-p", "tcp", "-j", CHAIN, check=False).returncode == 0:
            pass
        self._run("-F", CHAIN, check=False)
        self._run("-X", CHAIN, check=False)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [self._iptables, "-w", "5", "-t", "nat", *args]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=15, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CaptureError(f"iptables could not run: {exc}") from None
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
    """Where a redirected IPv4 connection was going (None if that cannot be told)."""
    if sock.family != socket.AF_INET:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    except OSError:
        return None
    port, address = _SOCKADDR_IN.unpack(raw)
    return str(ipaddress.IPv4Address(address)), port


def mark(sock: socket.socket) -> None:
    """Exempt ``sock``'s connection from the capture."""
    sock.setsockopt(socket.SOL_SOCKET, SO_MARK, MARK)
