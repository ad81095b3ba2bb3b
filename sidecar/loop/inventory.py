"""The container inventory: what the engine runs, the static mapping, the NAT table's
mappings, the probes' verdicts and this network namespace's addresses, as one ContainerIndex
for the planner. Owned by the loop thread; the engine is read here and only here.

When sources map the same container address, Docker wins (it knows the container and its
labels), then the static mapping (the operator's word), then the NAT table."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sidecar import natrules
from sidecar.mapping import ContainerIndex
from sidecar.model import STATIC_ID, Container, endpoint_host
from sidecar.protocols import Engine
from sidecar.report.events import Events
from sidecar.sources import static as static_source
from sidecar.sources.docker import DockerUnavailable
from sidecar.sources.nat import NatSnapshot
from sidecar.sources.probe import Prober


@dataclass
class Refreshed:
    """What a refresh found: the keys (container ids, addresses) whose paths must be read
    again, and whether everything must (a new network: addresses unknown before may now be
    this host's)."""

    keys: set[str] = field(default_factory=set)
    everything: bool = False
    listed: bool = False  # every container was listed again


class Inventory:
    """The containers this host runs, as the planner sees them."""

    def __init__(
        self,
        engine: Engine | None,
        static: static_source.StaticMapping,
        static_file: Path | None,
        static_ports: tuple[str, ...],
        prober: Prober | None,
        host_addresses: Callable[[], set[str]],
        events: Events,
        nat: Callable[[], NatSnapshot] | None = None,
        nat_ignore: tuple[natrules.Ignore, ...] = (),
    ) -> None:
        """``nat``: the NAT table's latest snapshot (None: that source is off)."""
        self.engine = engine
        self._static = static
        self._candidate: static_source.StaticMapping | None = None
        self._static_file = static_file
        self._static_ports = static_ports
        self._prober = prober
        self._host_addresses = host_addresses
        self._events = events
        self.containers: dict[str, Container] = {}
        self.subscribed = engine is None  # Docker's event stream is live (or no Docker)
        self.fresh = engine is None  # the listing can be trusted
        self.interface_addresses: set[str] = host_addresses()
        self._subnets: list[str] = []
        self._gateways: list[str] = []
        self._indexed: tuple[object, ...] = ()
        self.index = ContainerIndex(())
        self._nat_source = nat
        self._nat_ignore = nat_ignore
        self._nat_read: tuple[natrules.NatMapping, ...] | None = None
        self._nat_networks: tuple[str, ...] = ()
        self._nat_waited = False  # a pass was skipped for want of a first read
        self.nat_in_force: tuple[Container, ...] = ()
        self.nat_problem = ""

    def docker_event(self, problem: str) -> None:
        """The event stream became live ("") or was lost (why)."""
        self.subscribed = not problem
        if problem:
            self._events.connection("docker", "lost", problem=problem)

    def refresh_host_addresses(self) -> None:
        self.interface_addresses = self._host_addresses()

    def static_container(self) -> Container | None:
        return self._static.container(self.interface_addresses)

    def local_keys(self) -> set[str]:
        """Every key that concerns this host: its containers and their addresses, the NAT
        table's pseudo-containers' and the static mapping's."""
        mapped = (*self.containers.values(), *self.nat_in_force)
        keys = {key for c in mapped for key in (c.id, *c.addresses)}
        static = self.static_container()
        return keys | {STATIC_ID, *(static.addresses if static else ())}

    def refresh(
        self, all_containers: bool, changed: set[str], static: bool, nat: bool = False
    ) -> Refreshed | None:
        """Bring the view up to date; None while Docker's event stream is down or the NAT
        table was never read (everything is read again once it is). Raises
        DockerUnavailable when Docker does not answer."""
        found = Refreshed()
        due = nat or all_containers or self._nat_read is None
        if self._nat_source is not None and due and not self._reload_nat(found):
            return None
        if static or all_containers:
            found.keys |= self._reload_static()
        if self.engine is not None:
            docker = self._refresh_docker(self.engine, all_containers, changed)
            if docker is None:
                return None
            found.keys |= docker.keys
            found.everything |= docker.everything
            found.listed = docker.listed
        before = self.nat_in_force
        self._reindex()
        found.keys |= _moved(before, self.nat_in_force)
        return found

    def nat_not_ready(self) -> str:
        """Why the NAT table's mappings cannot be trusted ("" when they can)."""
        if self._nat_source is None:
            return ""
        if self.nat_problem:
            return f"NAT table not readable: {self.nat_problem}"
        return "NAT table not read yet" if self._nat_read is None else ""

    def _reload_nat(self, found: Refreshed) -> bool:
        """Take the NAT table's latest snapshot; False while it was never read."""
        assert self._nat_source is not None
        snapshot = self._nat_source()
        self.nat_problem = snapshot.problem
        if snapshot.problem:
            # The last good mappings stay in force: a failed read removes no rewrite.
            self._events.connection("nat_table", "unreadable", problem=snapshot.problem)
        else:
            self._events.recovered("nat_table")
        if snapshot.mappings is None:
            self._nat_waited = True
            self._events.debug("pass_skipped", reason="NAT table not read yet")
            return False
        if snapshot.mappings != self._nat_read:
            self._events.info("nat_table_changed", mappings=len(snapshot.mappings))
            self._nat_read = snapshot.mappings
        # A new container network: registrations of its addresses were not remembered (no
        # address was a container's there), so everything is read again, as for a new
        # Docker network.
        found.everything |= not set(snapshot.networks) <= set(self._nat_networks)
        self._nat_networks = snapshot.networks
        found.everything |= self._nat_waited
        self._nat_waited = False
        return True

    def _reindex(self) -> None:
        static = self.static_container()
        unreachable = self._prober.unreachable() if self._prober else {}
        if self._nat_read is not None:
            taken = {endpoint_host(a) for c in self.containers.values() for a in c.addresses}
            taken |= {endpoint_host(a) for a in (static.addresses if static else ())}
            self.nat_in_force = _nat_containers(
                self._nat_read, self._nat_ignore, frozenset(taken), self.engine is not None
            )
        view = (
            tuple(self.containers.values()), static, tuple(sorted(unreachable.items())),
            (*self._subnets, *self._nat_networks), tuple(sorted(self.interface_addresses)),
            tuple(self._gateways), self.nat_in_force,
        )  # fmt: skip
        if view != self._indexed:
            # Rebuilt only when something changed: a large static mapping makes it costly.
            self._indexed = view
            containers = [*view[0], *([static] if static else []), *self.nat_in_force]
            self.index = ContainerIndex(
                containers, unreachable, view[3], self.interface_addresses, self._gateways
            )

    def _reload_static(self) -> set[str]:
        if self._static_file is None:
            return set()
        try:
            mapping = static_source.configured(self._static_file, self._static_ports)
        except static_source.StaticMappingError as exc:
            self._events.connection("static_mapping", "unchanged", problem=str(exc))
            return set()
        if mapping == self._static:
            self._candidate = None
            return set()
        if mapping != self._candidate:
            # A file written in place can be read half written (empty, or cut at a line):
            # a change is acted on only once a later read (the watch reads again a second
            # later) finds the same mapping.
            self._candidate = mapping
            self._events.debug("static_mapping_settling", ports=len(mapping.ports))
            return set()
        self._events.info("static_mapping_changed", ports=dict(mapping.ports))
        self._static, self._candidate = mapping, None
        return {STATIC_ID}

    def _refresh_docker(
        self, engine: Engine, all_containers: bool, changed: set[str]
    ) -> Refreshed | None:
        if not self.subscribed:
            if self.fresh:
                self.fresh = False
                self._events.docker_stale()
            self._events.debug("pass_skipped", reason="Docker Engine unreachable")
            return None
        found = Refreshed()
        try:
            if all_containers or not self.fresh:
                listed = engine.running_containers()
                subnets, self._gateways = engine.networks()
                found.everything = bool(self._subnets) and subnets != self._subnets
                self._subnets = subnets
                # Only containers that differ from what the events said (a missed event):
                # their paths, under the old addresses and the new, are read again.
                now = {c.id: c for c in listed}
                moved = {
                    i for i in self.containers.keys() | now if self.containers.get(i) != now.get(i)
                }
                found.keys = self._keys_of(moved)
                self.containers = now
                found.keys |= self._keys_of(moved)
                self.fresh = found.listed = True
            else:
                for container_id in changed - {STATIC_ID}:
                    self._events.debug("container_changed", container=container_id[:12])
                    found.keys |= self._keys_of({container_id})
                    current = engine.container(container_id)
                    self.containers.pop(container_id, None)
                    if current is not None:
                        self.containers[container_id] = current
                    found.keys |= self._keys_of({container_id})
        except DockerUnavailable as exc:
            # The event stream may still be fine; list everything again once Docker answers.
            self._events.connection("docker", "unavailable", problem=str(exc))
            self.fresh = False
            raise
        self._events.recovered("docker")
        return found

    def _keys_of(self, container_ids: set[str]) -> set[str]:
        keys = set(container_ids)
        for container_id in container_ids & set(self.containers):
            keys.update(self.containers[container_id].addresses)
        return keys


@functools.lru_cache(maxsize=1)
def _nat_containers(
    mappings: tuple[natrules.NatMapping, ...],
    ignore: tuple[natrules.Ignore, ...],
    taken: frozenset[str],
    docker: bool,
) -> tuple[Container, ...]:
    """The NAT table's pseudo-containers, without what the operator leaves alone, the
    addresses a higher source maps, and (with the Docker source on) Docker's own rules,
    which the engine tells with the container's labels. Cached: asked for on every pass."""
    wanted = [
        m for m in natrules.kept(mappings, ignore)
        if m.container_ip not in taken and not (docker and m.chain == natrules.DOCKER_CHAIN)
    ]  # fmt: skip
    return natrules.containers(wanted)


def _moved(before: tuple[Container, ...], after: tuple[Container, ...]) -> set[str]:
    """The ids and addresses of the pseudo-containers that came, went or changed."""
    old, new = {c.id: c for c in before}, {c.id: c for c in after}
    keys: set[str] = set()
    for container_id in old.keys() | new.keys():
        if old.get(container_id) != new.get(container_id):
            keys.add(container_id)
            for container in (old.get(container_id), new.get(container_id)):
                keys.update(container.addresses if container else ())
    return keys
