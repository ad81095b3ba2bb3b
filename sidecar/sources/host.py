"""This network namespace's own addresses, read from /proc and the kernel: connections from
here reach ZooKeeper from them, and they tell which container's namespace this is."""

from __future__ import annotations

import fcntl
import ipaddress
import itertools
import socket
import struct
from pathlib import Path

_FIB_TRIE = Path("/proc/net/fib_trie")
_IF_INET6 = Path("/proc/net/if_inet6")
_SIOCGIFADDR = 0x8915


def addresses_of(interface: str) -> list[str]:
    """The addresses of one named interface: its IPv4 address first, then global IPv6 ones."""
    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            request = struct.pack("256s", interface.encode()[:15])
            answer = fcntl.ioctl(probe.fileno(), _SIOCGIFADDR, request)
            found.append(socket.inet_ntoa(answer[20:24]))
        except OSError:
            pass  # no such interface, or no IPv4 address on it
    try:
        lines = _IF_INET6.read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        fields = line.split()
        if len(fields) == 6 and fields[5] == interface:
            ip = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
            if not (ip.is_link_local or ip.is_loopback):
                found.append(ip.compressed)
    return found


def interface_addresses() -> set[str]:
    """Every address assigned to an interface of this network namespace (IPv4 and IPv6)."""
    return _ipv4_addresses() | _ipv6_addresses()


def _ipv4_addresses() -> set[str]:
    # fib_trie lists each assigned address as a leaf "|-- a.b.c.d" followed by "/32 host LOCAL";
    # routable but unassigned addresses (the rest of 127/8) appear only as wider prefixes.
    found: set[str] = set()
    try:
        lines = _FIB_TRIE.read_text().splitlines()
    except OSError:
        return found
    for leaf, kind in itertools.pairwise(lines):
        if "|--" in leaf and kind.strip() == "/32 host LOCAL":
            found.add(leaf.split("|--", 1)[1].strip())
    return found


def _ipv6_addresses() -> set[str]:
    found: set[str] = set()
    try:
        lines = _IF_INET6.read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        hex_address = line.split()[0]
        found.add(ipaddress.IPv6Address(bytes.fromhex(hex_address)).compressed)
    return found
