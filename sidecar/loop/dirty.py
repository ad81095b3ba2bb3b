"""Dirty work: what the sources report, collected for the loop's next pass.

Every source thread (kazoo's watches and connection listener, Docker events, the static-file
watch, the NAT table's watch, the address watch, the prober) only calls a method here, which
records what changed and wakes the loop. Marking never blocks for long and never reads or
writes anything else.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sidecar.model import Connection, Endpoint
from sidecar.sources.address import AdvertiseHost


@dataclass
class Work:
    """Scopes to re-read in the next pass, and what the sources reported since the last."""

    full: bool = False
    local: bool = False  # the paths that concern this host's containers and rewrites
    replan: bool = False  # ... all of them planned again, not only those that may have moved
    all_containers: bool = False
    static: bool = False  # the static mapping file changed
    nat: bool = False  # the NAT table's rules were read again and differ
    lease: bool = False
    roots: set[str] = field(default_factory=set)
    paths: set[str] = field(default_factory=set)
    containers: set[str] = field(default_factory=set)
    addresses: set[str] = field(default_factory=set)  # container hosts whose probes changed
    connection: list[tuple[Connection, float]] = field(default_factory=list)
    docker: list[str] = field(default_factory=list)  # "" subscribed, else why it was lost
    new_address: AdvertiseHost | None = None
    address_problem: str = ""
    indexed: set[str] = field(default_factory=set)  # fleet indexer: registry paths changed
    fleet: set[str] = field(default_factory=set)  # fleet nodes changed (work, ballots, members)
    more: bool = False  # the indexer has more to look up: another pass at once

    def carry(self, other: Work) -> None:
        """Add ``other``'s scopes (what to read again), not its reports (those were acted on
        when it was absorbed)."""
        self.full |= other.full
        self.local |= other.local
        self.replan |= other.replan
        self.all_containers |= other.all_containers
        self.static |= other.static
        self.nat |= other.nat
        self.lease |= other.lease
        for mine, theirs in (
            (self.roots, other.roots), (self.paths, other.paths),
            (self.containers, other.containers), (self.addresses, other.addresses),
            (self.indexed, other.indexed), (self.fleet, other.fleet),
        ):  # fmt: skip
            mine |= theirs

    def __bool__(self) -> bool:
        return (
            self.full
            or self.local
            or self.all_containers
            or self.static
            or self.nat
            or self.lease
            or self.new_address is not None
            or bool(self.address_problem)
            or bool(self.roots or self.paths or self.containers or self.addresses)
            or bool(self.connection or self.docker)
            or bool(self.indexed or self.fleet or self.more)
        )


class Dirty:
    """Thread-safe collection of dirty work."""

    def __init__(
        self,
        roots: tuple[str, ...],
        source_of: Callable[[str], str | None],
        fleet_root: str | None = None,
    ) -> None:
        """``source_of`` maps a mirror path to the path it mirrors (the one to re-read);
        ``fleet_root``: in a fleet, registry paths are the indexer's business, and changes
        under this root are the fleet's (work, ballots, members)."""
        self._roots = set(roots)
        self._source_of = source_of
        self._fleet_root = fleet_root
        self._lease_paths: frozenset[str] = frozenset()
        self._work = Work()
        self._since: float | None = None  # when the work not yet taken was first marked
        self._stopping = False
        self._wake = threading.Condition()

    def watch_leases(self, paths: frozenset[str]) -> None:
        """Changes of these paths (the lease parent, this sidecar's lease) concern the lease."""
        with self._wake:
            self._lease_paths = paths

    def path_changed(self, path: str) -> None:
        with self._wake:
            if path in self._lease_paths:
                self._work.lease = True
            elif path in self._roots:
                self._work.roots.add(path)
            elif self._fleet_root is None:
                self._work.paths.add(self._source_of(path) or path)
            elif path == self._fleet_root or path.startswith(self._fleet_root + "/"):
                self._work.fleet.add(path)
            else:
                self._work.indexed.add(self._source_of(path) or path)
            self._marked()

    def connection_changed(self, state: Connection) -> None:
        with self._wake:
            self._work.connection.append((state, time.monotonic()))
            self._marked()

    def container_changed(self, container_id: str) -> None:
        with self._wake:
            self._work.containers.add(container_id)
            self._marked()

    def static_changed(self) -> None:
        with self._wake:
            self._work.static = True
            self._marked()

    def nat_changed(self) -> None:
        with self._wake:
            self._work.nat = True
            self._marked()

    def docker_subscribed(self) -> None:
        """The event stream is live: everything must be read (events may have been missed)."""
        with self._wake:
            self._work.docker.append("")
            self._mark_everything()
            self._marked()

    def docker_lost(self, problem: str) -> None:
        with self._wake:
            self._work.docker.append(problem or "event stream lost")
            self._marked()

    def address_found(self, found: AdvertiseHost) -> None:
        with self._wake:
            self._work.new_address = found
            self._work.address_problem = ""
            self._marked()

    def address_unavailable(self, problem: str) -> None:
        with self._wake:
            self._work.address_problem = problem
            self._marked()

    def endpoint_changed(self, endpoint: Endpoint) -> None:
        with self._wake:
            self._work.addresses.add(endpoint.host)
            self._marked()

    def everything(self, containers_too: bool = True) -> None:
        with self._wake:
            self._mark_everything(containers_too)
            self._marked()

    def _mark_everything(self, containers_too: bool = True) -> None:
        self._work.full = True
        self._work.lease = True
        self._work.all_containers |= containers_too

    def periodic(self) -> None:
        """The periodic resync: containers, every path that concerns them, the roots' listings
        and the next slice of the sweep over all paths."""
        with self._wake:
            self._work.local = True
            self._work.roots |= self._roots
            self._work.all_containers = True
            self._work.lease = True
            self._marked()

    def again(self) -> None:
        """Another pass at once (the fleet's indexer has more to do)."""
        with self._wake:
            self._work.more = True
            self._marked()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()

    def take(self, timeout: float) -> Work:
        """Wait up to ``timeout`` for work (or a stop), then hand over everything marked."""
        with self._wake:
            if not self._work and not self._stopping:
                self._wake.wait(timeout)
            work, self._work, self._since = self._work, Work(), None
            return work

    def waiting_since(self) -> float | None:
        """When the oldest work marked and not yet taken was marked (None: none is)."""
        return self._since

    def _marked(self) -> None:
        if self._since is None:
            self._since = time.monotonic()
        self._wake.notify()
