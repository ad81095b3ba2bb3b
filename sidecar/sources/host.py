"""This host's own addresses, read from /proc: connections from here reach ZooKeeper from them."""

from __future__ import annotations

import ipaddress
import itertools
from pathlib import Path

_FIB_TRIE = Path("/proc/net/fib_trie")
_IF_INET6 = Path("/proc/net/if_inet6")


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
