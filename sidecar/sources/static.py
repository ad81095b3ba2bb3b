"""Port mappings without Docker: from the environment or a file, which is re-read on change.

For hosts where the sidecar cannot read a Docker socket (a Kubernetes pod with ``hostPort``,
a locked-down host): container port -> host port, applied to registrations of this network
namespace's own addresses (or of the addresses the file names). It appears to the planner
as one more container, ``static``.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import socket
import threading
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sidecar import labels
from sidecar.files import read_regular
from sidecar.hosts import is_ip, parse_port
from sidecar.model import STATIC_ID, Container, PublishedPort
from sidecar.quoting import quote

_CHECK_EVERY = 1.0
# A file written in place (an editor that truncates, then writes) can be read half written:
# a file changed this recently is read again until two reads agree, at start for at most
# _SETTLE_LIMIT seconds.
_SETTLE = 1.0
_SETTLE_LIMIT = 10.0
_NETWORK_NAMESPACE = "/proc/self/ns/net"
# A mapping file larger than this is refused (300,000 ports take 6 MB).
_LIMIT = 32 << 20
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


class StaticMappingError(ValueError):
    """The static mapping is invalid; the message says where, in one line."""


@dataclass(frozen=True)
class StaticMapping:
    """Container port -> host port, and the registered addresses it applies to."""

    ports: tuple[tuple[int, int], ...] = ()
    addresses: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()

    def container(self, default_addresses: Iterable[str]) -> Container | None:
        """The pseudo-container the planner maps through, or None for an empty mapping."""
        if not self.ports:
            return None
        addresses = self.addresses or tuple(sorted(_non_loopback(default_addresses)))
        return _pseudo_container(self.ports, addresses, self.labels)


def identity(environ: Mapping[str, str] = os.environ) -> str:
    """What stands for a Docker engine's identity without Docker, in markers and the lease:
    the pod's UID (``POD_UID``, from the downward API's ``metadata.uid``) when set, else this
    network namespace's identity; then the host name, for people. Two pods of one name (a
    rescheduled StatefulSet member, two namespaces) must not share a lease."""
    host = socket.gethostname()
    pod = re.sub(r"[^A-Za-z0-9-]", "", environ.get("POD_UID", ""))[:64]
    if pod:
        return f"{STATIC_ID}-pod-{pod}@{host}"
    try:
        # The namespace's inode is unique among the namespaces of one boot, and the same for
        # every process in it (a restarted sidecar, the app); the boot id tells boots apart.
        inode = os.stat(_NETWORK_NAMESPACE).st_ino
        boot = re.sub(r"[^A-Za-z0-9-]", "", _BOOT_ID.read_text())[:64]
    except OSError:
        return f"{STATIC_ID}@{host}"
    return f"{STATIC_ID}-netns-{inode}-{boot}@{host}"


def configured(path: Path | None, ports: Iterable[str]) -> StaticMapping:
    """The mapping the settings give: the file (if any) plus the port entries."""
    if path is not None:
        return load(path, ports)
    return StaticMapping(parse_ports(ports))


def at_start(path: Path | None, ports: Iterable[str]) -> StaticMapping:
    """``configured``, at start: a file changed in the last second is read again a second
    later, until two reads agree (for at most 10 s), so that a half-written file (empty, cut
    at a line, not yet TOML) is neither mapped nor refused."""
    ports = tuple(ports)
    deadline = time.monotonic() + _SETTLE_LIMIT
    earlier: StaticMapping | None = None
    while path is not None and _young(path) and time.monotonic() < deadline:
        try:
            found: StaticMapping | None = configured(path, ports)
        except StaticMappingError:
            found = None
        if found is not None and found == earlier:
            return found
        earlier = found
        time.sleep(_SETTLE)
    return configured(path, ports)


def _young(path: Path) -> bool:
    try:
        return time.time() - path.stat().st_mtime < _SETTLE
    except OSError:
        return False


@functools.lru_cache(maxsize=1)
def _pseudo_container(
    ports: tuple[tuple[int, int], ...],
    addresses: tuple[str, ...],
    container_labels: tuple[tuple[str, str], ...],
) -> Container:
    # Cached: asked for on every pass, and a large mapping has thousands of ports. One entry,
    # the mapping in force: it costs what the mapping itself does.
    published = tuple(PublishedPort(c, "", h) for c, h in ports)
    return Container(
        STATIC_ID, "static mapping", "static", addresses, published, labels=container_labels
    )


def parse_ports(entries: Iterable[str]) -> tuple[tuple[int, int], ...]:
    """``["20880:30880", ...]`` -> ``((20880, 30880), ...)``."""
    ports = {}
    for entry in entries:
        container, sep, host = entry.strip().partition(":")
        if not sep:
            raise StaticMappingError(f"{quote(entry)} is not CONTAINER_PORT:HOST_PORT")
        ports[_port(container, entry)] = _port(host, entry)
    return tuple(sorted(ports.items()))


def load(path: Path, extra_ports: Iterable[str] = ()) -> StaticMapping:
    """The mapping in ``path`` (TOML), plus ``extra_ports`` entries, which win."""
    try:
        doc = tomllib.loads(read_regular(path, _LIMIT).decode())
    except (OSError, ValueError, RecursionError) as exc:  # unreadable, not UTF-8, not TOML
        raise StaticMappingError(f"static mapping {path}: {exc}") from None
    unknown = set(doc) - {"ports", "addresses", "labels"}
    if unknown:
        raise StaticMappingError(f"static mapping {path}: unknown key {sorted(unknown)[0]!r}")
    table = doc.get("ports", {})
    if not isinstance(table, dict):
        raise StaticMappingError(f"static mapping {path}: [ports] must be a table")
    entries = [f"{c}:{h}" for c, h in table.items()]
    addresses = doc.get("addresses", [])
    if not isinstance(addresses, list) or not all(_is_ip(a) for a in addresses):
        raise StaticMappingError(f"static mapping {path}: addresses must be a list of IPs")
    label_table = doc.get("labels", {})
    if not isinstance(label_table, dict) or any(
        isinstance(v, (dict, list)) for v in label_table.values()
    ):
        raise StaticMappingError(f"static mapping {path}: [labels] must map names to values")
    for key in label_table:
        if not key.startswith(labels.PREFIX):
            raise StaticMappingError(f"static mapping {path}: label {quote(key)} lacks the "
                                     f"prefix {labels.PREFIX!r}")  # fmt: skip
    found_labels = labels.normal((k, str(v).lower() if isinstance(v, bool) else str(v))
                                 for k, v in label_table.items())  # fmt: skip
    # The file is configuration: a value the sidecar cannot follow (an advertise-host that is
    # no host) refuses the file, at start (exit 2) as at a change (the earlier mapping stays).
    try:
        labels.parse(found_labels)
    except labels.InvalidLabels as exc:
        raise StaticMappingError(f"static mapping {path}: {exc}") from None
    try:
        ports = dict(parse_ports(entries))
        ports.update(parse_ports(extra_ports))
    except StaticMappingError as exc:
        raise StaticMappingError(f"static mapping {path}: {exc}") from None
    normal = tuple(ipaddress.ip_address(a).compressed for a in addresses)
    return StaticMapping(tuple(sorted(ports.items())), normal, found_labels)


class StaticWatch:
    """Reports when the mapping file changes (checked once a second; a stat is cheap), and
    once more a second later, so that the reader can confirm a change by reading the same
    mapping twice (a file written in place can be read half written)."""

    def __init__(self, path: Path, on_change: Callable[[], None]) -> None:
        self._path = path
        self._on_change = on_change
        self._seen = self._stamp()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="static-mapping", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def _stamp(self) -> tuple[int, int] | None:
        try:
            stat = self._path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def _run(self) -> None:
        confirm = False
        while not self._stopping.wait(_CHECK_EVERY):
            stamp = self._stamp()
            if stamp != self._seen or confirm:
                confirm = stamp != self._seen
                self._seen = stamp
                self._on_change()


def _port(text: str, entry: str) -> int:
    try:
        return parse_port(str(text).strip())
    except ValueError as exc:
        raise StaticMappingError(f"{quote(entry)}: {exc}") from None


def _is_ip(value: object) -> bool:
    return isinstance(value, str) and is_ip(value)


def _non_loopback(addresses: Iterable[str]) -> set[str]:
    ips = (ipaddress.ip_address(a) for a in addresses)
    return {ip.compressed for ip in ips if not (ip.is_loopback or ip.is_link_local)}
