"""Hosts on one machine: network namespaces behind a bridge, each with its own address.

A process started in a :class:`Host` connects to the bridge's address from the host's own
address, so a ZooKeeper server listening there sees (``cons``) a distinct client address per
host, and it runs in a UTS namespace of its own named after the host, so ``hostname`` differs
too. Only addresses of a private /24 chosen here (``10.250.X.0/24``) are used; nothing is
routed anywhere else.

Everything created carries this process's id in its name (bridge ``fbr<pid hex>``,
namespaces ``fleet-<pid>-<n>``), so that what a killed run left behind is recognised and
removed by the next one; :meth:`Hosts.close` removes everything this run created.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

_SUBNETS = ipaddress.IPv4Network("10.250.0.0/16")
_NETNS = re.compile(r"^fleet-(\d+)-\d+\b")
_BRIDGE = re.compile(r"^fbr([0-9a-f]+)\b")
_FIRST_HOST = 10  # host n gets .(10 + n); .1 is the bridge


@dataclass(frozen=True)
class Host:
    """One stand-in host: its name (also its hostname), namespace and address."""

    index: int
    name: str
    netns: str
    address: str


class Hosts:
    """A bridge with an address of its own, and hosts added behind it on demand."""

    def __init__(self) -> None:
        _remove_leftovers()
        self._tag = f"{os.getpid():x}"
        self.bridge = f"fbr{self._tag}"
        self.subnet = _free_subnet()
        self.gateway = str(self.subnet.network_address + 1)
        self.hosts: list[Host] = []
        _ip("link", "add", self.bridge, "type", "bridge")
        try:
            _ip("addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
        except BaseException:
            self.close()
            raise

    def add(self) -> Host:
        """One more host behind the bridge (up to 240)."""
        index = len(self.hosts)
        if index + _FIRST_HOST >= 250:
            raise ValueError("a /24 holds at most 240 hosts")
        netns = f"fleet-{os.getpid()}-{index}"
        veth = f"fv{self._tag}-{index}"
        address = str(self.subnet.network_address + _FIRST_HOST + index)
        host = Host(index, f"host-{index}", netns, address)
        _ip("netns", "add", netns)
        self.hosts.append(host)  # from here on, close() removes it
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
        _ip("link", "set", veth, "master", self.bridge, "up")
        _ip("-n", netns, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", "eth0")
        _ip("-n", netns, "link", "set", "eth0", "up")
        _ip("-n", netns, "link", "set", "lo", "up")
        return host

    def ensure(self, count: int) -> list[Host]:
        """The first ``count`` hosts, adding the missing ones."""
        while len(self.hosts) < count:
            self.add()
        return self.hosts[:count]

    @staticmethod
    def command(host: Host, argv: Sequence[str]) -> list[str]:
        """``argv`` run as ``host``: in its network namespace, with its hostname. The process
        keeps the pid the caller sees (every step execs the next)."""
        return [
            *("ip", "netns", "exec", host.netns, "unshare", "--uts", "--"),
            *("sh", "-c", 'hostname "$0" && exec "$@"', host.name, *argv),
        ]

    def close(self) -> None:
        """Remove every namespace (with its veth pair) and the bridge; each on its own."""
        for host in self.hosts:
            subprocess.run(["ip", "netns", "del", host.netns], check=False, capture_output=True)
        self.hosts = []
        subprocess.run(["ip", "link", "del", self.bridge], check=False, capture_output=True)

    def __enter__(self) -> Hosts:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()[:200]}")


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 of 10.250.0.0/16 that no interface address and no route of this host touches."""
    shown = subprocess.run(
        ["sh", "-c", "ip -4 -o addr show; ip -4 route show table all"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    taken = set()
    for word in shown.split():
        try:
            network = ipaddress.ip_network(word, strict=False)
        except ValueError:
            continue
        if isinstance(network, ipaddress.IPv4Network) and network.overlaps(_SUBNETS):
            taken.add(network)
    for subnet in _SUBNETS.subnets(new_prefix=24):
        if not any(subnet.overlaps(network) for network in taken):
            return subnet
    raise RuntimeError("no free /24 left in 10.250.0.0/16")


def _remove_leftovers() -> None:
    """Namespaces (and what still runs in them) and bridges of runs whose process is gone
    (killed before it could clean up)."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    for line in listed.stdout.splitlines():
        match = _NETNS.match(line)
        if match and not _alive(int(match[1])):
            netns = line.split()[0]
            pids = subprocess.run(
                ["ip", "netns", "pids", netns], capture_output=True, text=True, check=False
            )
            for pid in pids.stdout.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", netns], check=False)
    links = subprocess.run(
        ["ip", "-o", "link", "show", "type", "bridge"], capture_output=True, text=True, check=False
    )
    for line in links.stdout.splitlines():
        name = line.split(":")[1].strip() if line.count(":") >= 2 else ""
        match = _BRIDGE.match(name)
        if match and not _alive(int(match[1], 16)):
            subprocess.run(["ip", "link", "del", name], check=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
