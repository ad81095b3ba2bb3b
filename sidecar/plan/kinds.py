"""What differs between the two kinds of registration: provider URL nodes (the name carries
everything) and application-level instance nodes (Curator JSON in the data)."""

from __future__ import annotations

from collections.abc import Iterable

from sidecar import instances
from sidecar.mapping import ContainerIndex, Mapped
from sidecar.model import Endpoint, RegistryNode
from sidecar.ownership import Marker
from sidecar.plan.decisions import PathView, Remembered
from sidecar.plan.parsing import Parsed, Parses


class UrlKind:
    """Provider URL nodes: the name carries everything, the data is the sidecar's marker.
    What it parses comes from, and stays in, the path's parses (``parses``)."""

    def __init__(self, parses: Parses) -> None:
        self._parses = parses

    def parse(self, name: str, data: bytes) -> Parsed | str:
        return self._parses.url(name)

    def marker_of(self, node: RegistryNode) -> Marker | None:
        return self._parses.marker(node.data)

    def target(
        self, parsed: Parsed, found: Mapped, containers: ContainerIndex, advertise_host: str
    ) -> tuple[str, bytes | None, str]:
        assert parsed.url is not None
        return parsed.url.with_endpoint(found.advertised), None, ""

    def data(self, marker: Marker, content: bytes | None) -> bytes:
        return marker.encode()

    def same(self, existing: bytes, wanted: bytes) -> bool:
        """Consumers read only the name: the data (the marker) never needs rewriting."""
        return True


class InstanceKind:
    """Instance nodes: name and data both carry the address; markers are remembered only.
    What it parses comes from, and stays in, the path's parses (``parses``)."""

    def __init__(self, remembered: Iterable[Remembered], parses: Parses) -> None:
        self._remembered = {r.node.name: r for r in remembered}
        self._parses = parses

    def parse(self, name: str, data: bytes) -> Parsed | str:
        return self._parses.instance(name, data)

    def marker_of(self, node: RegistryNode) -> Marker | None:
        remembered = self._remembered.get(node.name)
        if remembered is not None and remembered.node.data == node.data:
            return remembered.marker
        return None

    def target(
        self, parsed: Parsed, found: Mapped, containers: ContainerIndex, advertise_host: str
    ) -> tuple[str, bytes | None, str]:
        assert parsed.instance is not None
        container = found.container

        def host_port(port: int) -> int | None:
            return containers.external_port(container, port, advertise_host)

        name, data, unmapped = instances.rewrite(parsed.instance, found.advertised, host_port)
        notes = []
        if unmapped:
            notes.append(
                f"ports {', '.join(map(str, unmapped))} are not published: left as they are"
            )
        if found.advertised.port != parsed.endpoint.port:
            notes.append(
                f"Dubbo 3.1+ consumers may take the port from the provider's metadata "
                f"({parsed.endpoint.port}), not {found.advertised.port}: publish the same port "
                f"number on the host (-p {parsed.endpoint.port}:{parsed.endpoint.port}), or "
                "register interface-level only (register-mode=interface), or set "
                "FORCE_INTERFACE on consumers"
            )
        return name, data, "; ".join(notes)

    def data(self, marker: Marker, content: bytes | None) -> bytes:
        assert content is not None
        return content

    def same(self, existing: bytes, wanted: bytes) -> bool:
        return existing == wanted


def kind_of(view: PathView) -> UrlKind | InstanceKind:
    """The kind of a path's nodes, parsing into the view's parses."""
    return InstanceKind(view.remembered, view.parsed) if view.instances else UrlKind(view.parsed)


Kind = UrlKind | InstanceKind


def claims_in(view: PathView) -> dict[Endpoint, set[int]]:
    """The sessions registering each endpoint: owners of original registrations (instances
    rewritten in place included: their names keep the endpoint), and the provider sessions
    recorded for rewritten nodes (their originals are gone)."""
    kind = kind_of(view)
    claims: dict[Endpoint, set[int]] = {}
    for node in view.nodes:
        marker = kind.marker_of(node)
        if marker is not None:
            claims.setdefault(marker.container_endpoint, set()).add(marker.provider_session)
            continue
        parsed = kind.parse(node.name, node.data)
        endpoint = parsed.endpoint if isinstance(parsed, Parsed) else _named(view, node)
        if endpoint is not None:
            claims.setdefault(endpoint, set()).add(node.owner)
    return claims


def _named(view: PathView, node: RegistryNode) -> Endpoint | None:
    """The endpoint an instance's name registers when its data names another (rewritten in
    place), if its data is an instance at all."""
    if not view.instances:
        return None
    try:
        instances.parse_data(node.name, node.data)
    except instances.MalformedInstance:
        return None
    return instances.endpoint_of(node.name)
