"""Where the NAT table is read: the DNAT rules that publish container ports on this host
(Docker, Podman's netavark, the CNI ``portmap`` plugin of Kubernetes runtimes), read only.

A thread reads the rules at start and again when they change, and keeps the latest parsed
snapshot for the loop. The nf_tables back end tells of every change of its rules (netlink,
``NFNLGRP_NFTABLES``): the thread sleeps in ``select`` until it does. The legacy back end
tells nothing: its tables' sizes are compared once a second (a ``getsockopt`` call, no
process; every fifth time their entries too) and the rules read only when they change.
Without notifications (not allowed), and while reads fail, the rules are read every 2 s.
A read that fails keeps the last good snapshot; the problem is kept for the loop to report.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import select
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sidecar.natrules import NatMapping, networks, parse

_NETLINK_NETFILTER = 12
_NFNLGRP_NFTABLES = 7
_SOL_NETLINK = 270
_NETLINK_ADD_MEMBERSHIP = 1
# Rules come in bursts (a pod's hostPorts, a container's ports): read once it is quiet.
_QUIET = 0.15
_LONGEST_BURST = 1.0
_LEGACY_EVERY = 1.0
_ENTRIES_EVERY = 5
_AGAIN_EVERY = 2.0
_READ_TIMEOUT = 10.0
_OUTPUT_LIMIT = 64 << 20
# getsockopt of the legacy back end (linux/netfilter_ipv4/ip_tables.h): the table's info,
# then its entries, whose packet and byte counters (which traffic moves) are left out.
_GET_INFO, _GET_ENTRIES = 64, 65
_SOL_IPV6 = socket.IPPROTO_IPV6  # 41, as SOL_IPV6
_LIBC = ctypes.CDLL(None, use_errno=True)
_INFO = struct.Struct("32sI5I5III")
_NAT = b"nat".ljust(32, b"\0")
_FAMILIES = (  # level, the entry's counters' offset, /proc list of its loaded tables
    (socket.SOL_IP, 96, Path("/proc/net/ip_tables_names")),
    (_SOL_IPV6, 152, Path("/proc/net/ip6_tables_names")),
)


class NatUnreadable(Exception):
    """The NAT table could not be read; the message says why."""


@dataclass(frozen=True)
class NatSnapshot:
    """The mappings last read (None: never read), and why the last read failed ("": it did
    not)."""

    mappings: tuple[NatMapping, ...] | None = None
    problem: str = ""
    networks: tuple[str, ...] = ()  # the container networks the rules name


def commands(legacy_in_use: Callable[[int], bool] | None = None) -> list[list[str]]:
    """The programs that print this host's NAT rules: both back ends where both are there
    (a node's programs may write through either), the legacy one only for a table that holds
    rules (reading would load it, and needs NET_RAW); else the ``iptables-save`` there is."""
    loaded = legacy_in_use or _legacy_in_use
    found = []
    for family, level in (("iptables", socket.SOL_IP), ("ip6tables", _SOL_IPV6)):
        nft, legacy = shutil.which(f"{family}-nft-save"), shutil.which(f"{family}-legacy-save")
        if nft:
            found.append([nft, "-t", "nat"])
        if legacy and loaded(level):
            found.append([legacy, "-t", "nat"])
        if not nft and not legacy and (plain := shutil.which(f"{family}-save")):
            found.append([plain, "-t", "nat"])
    return found


def read_table(programs: list[list[str]] | None = None) -> str:
    """The NAT rules as the programs print them. Raises NatUnreadable."""
    programs = commands() if programs is None else programs
    if not programs:
        raise NatUnreadable("no iptables-save program found (install iptables)")
    texts = []
    for argv in programs:
        try:
            done = subprocess.run(argv, capture_output=True, timeout=_READ_TIMEOUT, check=False,
                                  stdin=subprocess.DEVNULL)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise NatUnreadable(f"{' '.join(argv)}: {exc}") from None
        if done.returncode != 0:
            said = done.stderr.decode(errors="replace").strip().splitlines()
            reason = said[-1][:300] if said else f"exit status {done.returncode}"
            raise NatUnreadable(f"{' '.join(argv)}: {reason}")
        texts.append(done.stdout[:_OUTPUT_LIMIT].decode(errors="replace"))
    return "\n".join(texts)


class NatWatch:
    """Reads the NAT table at start and whenever it changes; ``latest`` is the snapshot.

    ``on_change`` runs on the watch thread after each read that changed the snapshot (its
    mappings or its problem) and must only mark work dirty.
    """

    def __init__(self, on_change: Callable[[], None], read: Callable[[], str] = read_table) -> None:
        self._on_change = on_change
        self._read_rules = read
        self._lock = threading.Lock()
        self._snapshot = NatSnapshot()
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = -1, -1  # the pipe that wakes the thread to stop
        self._thread = threading.Thread(target=self._run, name="nat-table", daemon=True)
        self.reads = 0  # how many times the rules were read (for tests and the bench)

    def latest(self) -> NatSnapshot:
        with self._lock:
            return self._snapshot

    def start(self) -> None:
        self._wake_r, self._wake_w = os.pipe()
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def read_now(self) -> NatSnapshot:
        """Read the rules once (at start, and for ``plan`` and ``status``): the new snapshot,
        or the last good mappings with the problem."""
        self.reads += 1
        try:
            text = self._read_rules()
            found = NatSnapshot(parse(text), "", networks(text))
        except NatUnreadable as exc:
            last = self.latest()
            found = NatSnapshot(last.mappings, str(exc), last.networks)
        with self._lock:
            self._snapshot = found
        return found

    def _run(self) -> None:
        listener = _subscribe()
        legacy = _LegacyDigest()
        try:
            while not self._stopping.is_set():
                before = self.latest()
                if self.read_now() != before:
                    self._on_change()
                self._wait_for_change(listener, legacy)
        finally:
            if listener is not None:
                listener.close()
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _wait_for_change(self, listener: socket.socket | None, legacy: _LegacyDigest) -> None:
        """Return once the rules may have changed (and gone quiet), or on stop. With only
        nf_tables in use the thread sleeps until told; the legacy back end's digest is
        compared once a second; without notifications, and while reads fail, the rules are
        read again every few seconds."""
        watched = [self._wake_r] + ([listener.fileno()] if listener is not None else [])
        while not self._stopping.is_set():
            period = _LEGACY_EVERY if legacy.in_use() else None
            if listener is None or self.latest().problem:
                period = _AGAIN_EVERY
            ready, _, _ = select.select(watched, [], [], period)
            if self._wake_r in ready:
                return
            if ready:
                self._drain_burst(listener)
                return
            if period == _AGAIN_EVERY or legacy.changed():
                return

    def _drain_burst(self, listener: socket.socket | None) -> None:
        """Swallow notifications until none came for ``_QUIET`` seconds (at most
        ``_LONGEST_BURST``): a burst of rule changes is read once."""
        if listener is None:
            return
        deadline = time.monotonic() + _LONGEST_BURST
        while time.monotonic() < deadline and not self._stopping.is_set():
            ready, _, _ = select.select([listener], [], [], _QUIET)
            if not ready:
                return
            try:
                listener.recv(1 << 16)
            except OSError:  # ENOBUFS: some were lost; the read that follows sees them all
                return


def _subscribe() -> socket.socket | None:
    """A netlink socket told of every change of the nf_tables rules, or None where there is
    none to have (no nf_tables, not allowed)."""
    try:
        listener = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_NETFILTER)
    except OSError:
        return None
    try:
        listener.bind((0, 0))
        listener.setsockopt(_SOL_NETLINK, _NETLINK_ADD_MEMBERSHIP, _NFNLGRP_NFTABLES)
        listener.setblocking(False)
    except OSError:
        listener.close()
        return None
    return listener


def _legacy_loaded(level: int) -> bool:
    """Whether the legacy back end's ``nat`` table of this family is loaded."""
    where = next(path for family, _, path in _FAMILIES if family == level)
    try:
        return "nat" in where.read_text().split()
    except OSError:
        return False


def _legacy_in_use(level: int) -> bool:
    """Whether the legacy ``nat`` table of this family holds rules of its own: loaded, and
    more entries than its built-in chains' policies and the end mark (a table loaded by a
    mere listing holds none). True when it cannot be told: the read then says why."""
    if not _legacy_loaded(level):
        return False
    try:
        info = _INFO.unpack(_table_info(level))
    except struct.error:  # it cannot be told
        return True
    hooks, entries = info[1], info[-2]
    return bool(entries > bin(hooks).count("1") + 1)


class _LegacyDigest:
    """The legacy back end's NAT tables, compared once a second. Their sizes and rule counts
    (``IPT_SO_GET_INFO``: microseconds) change with every rule added or removed; every fifth
    time their entries are compared too, for rules replaced by others of the same size (a pod
    replaced by another within a second). The entries' packet counters move with traffic,
    so they are left out of the comparison; that costs a walk over every entry (milliseconds
    for 1,000 published ports), taken only when the raw entries differ from the last time's."""

    def __init__(self) -> None:
        self._raw: bytes | None = None  # the entries as last read, before any read: none
        self._entries = b""
        self._info, self._entries = self._info_digest(), self._entries_digest()
        self._polls = 0

    def in_use(self) -> bool:
        return any(_legacy_loaded(level) for level, _, _ in _FAMILIES)

    def changed(self) -> bool:
        self._polls += 1
        info = self._info_digest()
        if info == self._info and self._polls % _ENTRIES_EVERY:
            return False
        entries = self._entries_digest()
        changed = info != self._info or entries != self._entries
        self._info, self._entries = info, entries
        return changed

    def _entries_digest(self) -> bytes:
        tables = [
            (_table(level), level, counters)
            for level, counters, _ in _FAMILIES
            if _legacy_loaded(level)
        ]
        raw = b"".join(blob for blob, _, _ in tables)  # kept: comparing is cheaper than hashing
        if raw == self._raw:  # not even a counter moved: idle
            return self._entries
        self._raw = raw
        digest = hashlib.blake2b(digest_size=16)
        for blob, level, counters in tables:
            digest.update(_without_counters(blob, level, counters))
        return digest.digest()

    @staticmethod
    def _info_digest() -> bytes:
        digest = hashlib.blake2b(digest_size=16)
        for level, _, _ in _FAMILIES:
            if _legacy_loaded(level):
                digest.update(_table_info(level))
        return digest.digest()


def _table_info(level: int) -> bytes:
    """The legacy ``nat`` table's info of one family ("" when it cannot be had)."""
    family = socket.AF_INET if level == socket.SOL_IP else socket.AF_INET6
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            return _getsockopt(sock, level, _GET_INFO, _NAT, _INFO.size)
    except OSError:
        return b""


def _table(level: int) -> bytes:
    """The legacy ``nat`` table's entries of one family, as the kernel gives them ("" when
    they cannot be had: the full read then says why)."""
    family = socket.AF_INET if level == socket.SOL_IP else socket.AF_INET6
    try:
        # Any socket of the family is asked (a raw one would need NET_RAW too).
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            info = _getsockopt(sock, level, _GET_INFO, _NAT, _INFO.size)
            size = _INFO.unpack(info)[-1]
            header = _NAT + struct.pack("I", size) + bytes(4)  # entries start 8-aligned
            return _getsockopt(sock, level, _GET_ENTRIES, header, len(header) + size)
    except (OSError, struct.error):
        return b""


def _without_counters(raw: bytes, level: int, counters: int) -> bytes:
    """The entries with their packet and byte counters zeroed."""
    blob = bytearray(raw)
    offset, next_at = len(_NAT) + 8, 90 if level == socket.SOL_IP else 142
    while offset + counters + 16 <= len(blob):
        blob[offset + counters : offset + counters + 16] = bytes(16)
        step = int.from_bytes(blob[offset + next_at : offset + next_at + 2], "little")
        if step <= 0:
            break
        offset += step
    return bytes(blob)


def _getsockopt(sock: socket.socket, level: int, name: int, head: bytes, size: int) -> bytes:
    """getsockopt(2) with an input buffer (``head``: the table's name), which Python's
    cannot pass; a table's entries are megabytes, so they are copied once."""
    buffer = ctypes.create_string_buffer(size)
    ctypes.memmove(buffer, head, len(head))
    length = ctypes.c_uint32(size)
    if _LIBC.getsockopt(sock.fileno(), level, name, buffer, ctypes.byref(length)) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return ctypes.string_at(buffer, length.value)
