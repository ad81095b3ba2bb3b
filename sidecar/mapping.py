"""Where container endpoints are mapped to the address consumers should use (pure, no I/O)."""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sidecar import labels
from sidecar.model import Container, Endpoint, PublishedPort, endpoint_host


@dataclass(frozen=True)
class Mapped:
    """The endpoint is a published port of a local container.

    ``by_label`` names the labels that chose the advertised endpoint; ``mode`` is the
    container's mode label, if any; ``persistent_application`` its label claiming persistent
    registrations, if any.
    """

    container: Container
    binding: PublishedPort
    advertised: Endpoint
    by_label: tuple[str, ...] = ()
    mode: str | None = None
    persistent_application: str | None = None


@dataclass(frozen=True)
class Unmapped:
    """The endpoint cannot be rewritten.

    ``local`` says whether it concerns this host at all; ``suspended`` that its container
    still exists but does not serve now (paused, unhealthy, not answering probes).
    """

    reason: str
    container: Container | None = None
    local: bool = True
    suspended: bool = False
    opted_out: bool = False  # by its labels (or labels the sidecar cannot follow)


class ContainerIndex:
    """Running and paused containers of one Docker engine, looked up by address."""

    def __init__(
        self,
        containers: Iterable[Container],
        unreachable: Mapping[Endpoint, str] | None = None,
        subnets: Iterable[str] = (),
        host_addresses: Iterable[str] = (),
        gateways: Iterable[str] = (),
    ) -> None:
        """``unreachable``: container endpoints that stopped answering probes, and why;
        ``subnets``: the engine's network subnets; ``host_addresses``: this host's own;
        ``gateways``: the engine's network gateways (this host's addresses on its bridges,
        visible even from inside a container)."""
        self.gateways = frozenset(endpoint_host(g) for g in gateways)
        self.unreachable = dict(unreachable or {})
        self._host_addresses = {endpoint_host(a) for a in host_addresses}
        self.subnets = tuple(ipaddress.ip_network(s, strict=False) for s in subnets)
        self._in_networks: dict[str, bool] = {}
        self.by_id: dict[str, Container] = {}
        self._by_address: dict[str, list[Container]] = defaultdict(list)
        self._bindings: dict[tuple[str, int], list[PublishedPort]] = defaultdict(list)
        self._publishers: dict[int, set[str]] = defaultdict(set)  # host port -> container ids
        # Each container's labels parsed once for the index's life (or why they are invalid).
        self._labels: dict[str, labels.ContainerLabels | str] = {}
        for container in containers:
            self.by_id[container.id] = container
            self._labels[container.id] = _labels_of(container)
            for published in container.published:
                self._bindings[(container.id, published.container_port)].append(published)
                self._publishers[published.host_port].add(container.id)
            for address in container.addresses:
                self._by_address[endpoint_host(address)].append(container)

    def addresses(self) -> set[str]:
        """Every address of every running container."""
        return set(self._by_address)

    def advertised_addresses(self) -> set[str]:
        """Addresses other than the advertised host that these containers' rewrites may carry:
        the host addresses their ports are bound to, the hosts their labels advertise."""
        found = set()
        for container in self.by_id.values():
            found |= {
                endpoint_host(b.host_ip) for b in container.published if not b.any_host_address
            }
            wanted = self.labels_of(container)
            if isinstance(wanted, str):
                continue
            if wanted.advertise_host:
                found.add(endpoint_host(wanted.advertise_host))
        return found

    def labels_of(self, container: Container) -> labels.ContainerLabels | str:
        """What ``container``'s labels ask for, or why they are invalid."""
        found = self._labels.get(container.id)
        return found if found is not None else _labels_of(container)

    def binding(self, container: Container, port: int, advertise_host: str) -> PublishedPort | None:
        """The binding of ``port`` of ``container`` (see choose_binding)."""
        return choose_binding(self._bindings.get((container.id, port), ()), advertise_host)

    def external_port(self, container: Container, port: int, advertise_host: str) -> int | None:
        """The port consumers dial for ``port`` of ``container``: its label, else its binding's
        host port (None when the port is not published)."""
        wanted = self.labels_of(container)
        if isinstance(wanted, str):
            return None
        binding = self.binding(container, port, wanted.advertise_host or advertise_host)
        if binding is None:
            return None
        return wanted.external_port(port) or binding.host_port

    def in_docker_network(self, address: str) -> bool:
        """Whether ``address`` lies in one of the engine's networks (a bridge gateway, say)."""
        if not self.subnets:
            return False
        known = self._in_networks.get(address)
        if known is None:
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                known = False
            else:
                known = any(ip.version == net.version and ip in net for net in self.subnets)
            self._in_networks[address] = known
        return known

    def resolve(self, endpoint: Endpoint, advertise_host: str) -> Mapped | Unmapped:
        """Map a registered container endpoint to its published host endpoint, or say why not."""
        owners = self._by_address.get(endpoint.host, [])
        if not owners:
            if endpoint.host in self._host_addresses | {endpoint_host(advertise_host)}:
                return self._published_already(endpoint)
            return Unmapped("not a container address on this Docker host", local=False)
        if len(owners) > 1:
            names = ", ".join(sorted(c.name for c in owners))
            return Unmapped(f"address {endpoint.host} belongs to several containers ({names})")
        container = owners[0]
        wanted = self.labels_of(container)
        if isinstance(wanted, str):
            return Unmapped(f"{wanted}: left alone", container, opted_out=True)
        if not wanted.enabled:
            return Unmapped(f"opted out by label {labels.ENABLE}=false", container, opted_out=True)
        advertise_host = wanted.advertise_host or advertise_host
        binding = self.binding(container, endpoint.port, advertise_host)
        if binding is None:
            bound = sorted({f"{b.host_ip}:{b.host_port}" for b in container.published
                            if b.container_port == endpoint.port})  # fmt: skip
            reason = f"port {endpoint.port} of container {container.name} is not published"
            if bound:
                reason = (
                    f"port {endpoint.port} of container {container.name} is published only on "
                    f"{', '.join(bound)}: not reachable from other hosts at {advertise_host}"
                )
            return Unmapped(reason, container)
        if container.not_serving:
            reason = f"container {container.name} is {container.not_serving}"
            return Unmapped(reason, container, suspended=True)
        if endpoint in self.unreachable:
            reason = f"container {container.name} {self.unreachable[endpoint]}"
            return Unmapped(reason, container, suspended=True)
        by_label = []
        host = advertise_host if binding.any_host_address else binding.host_ip
        if wanted.advertise_host:
            # A host named on the container beats the binding's: a NAT or balancer in front.
            host = wanted.advertise_host
            by_label.append(labels.ADVERTISE_HOST)
        port = wanted.external_port(endpoint.port)
        if port is not None:
            by_label.append(f"{labels.PORT}{endpoint.port}")
        advertised = Endpoint.of(host, port or binding.host_port)
        return Mapped(container, binding, advertised, tuple(by_label), wanted.mode,
                      wanted.persistent_application)  # fmt: skip

    def _published_already(self, endpoint: Endpoint) -> Unmapped:
        """A registration with an address of this host: a container's published port (written
        so through a proxy, or DUBBO_PORT_TO_REGISTRY), or host networking."""
        publishers = self._publishers.get(endpoint.port, set())
        if len(publishers) == 1:
            container = self.by_id[next(iter(publishers))]
            return Unmapped(
                f"registered with the published address of container {container.name}: "
                "nothing to rewrite", container,
            )  # fmt: skip
        return Unmapped(
            "registered with an address of this host (host networking or "
            "DUBBO_IP_TO_REGISTRY): nothing to rewrite"
        )


def choose_binding(bindings: Iterable[PublishedPort], advertise_host: str) -> PublishedPort | None:
    """Of one port's bindings, the one that other hosts can reach at the advertised address.

    A binding on one specific host address is advertised as is, unless that address is
    loopback or link-local (reachable from this host only). A binding on all addresses
    counts only in the advertised host's family: Docker picks IPv4 and IPv6 host ports
    independently, so the other family's port may belong to another container.
    """
    want_ipv6 = ":" in advertise_host
    candidates = [
        b
        for b in bindings
        if (b.is_ipv6 == want_ipv6 if b.any_host_address else _reachable_elsewhere(b.host_ip))
    ]
    candidates.sort(key=lambda b: (b.any_host_address, b.host_port))
    return candidates[0] if candidates else None


def _reachable_elsewhere(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return not (ip.is_loopback or ip.is_link_local)


def _labels_of(container: Container) -> labels.ContainerLabels | str:
    try:
        return labels.parse(container.labels)
    except labels.InvalidLabels as exc:
        return str(exc)
