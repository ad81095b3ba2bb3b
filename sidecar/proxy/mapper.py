"""What the proxy asks about the app's endpoints: published where, and back (pure, no I/O)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from sidecar.mapping import ContainerIndex, Mapped
from sidecar.model import Container, Endpoint

_REMEMBERED = 4096


@dataclass(frozen=True)
class NotMapped:
    """The endpoint is the app's own but has no published endpoint; ``reason`` says why."""

    reason: str


class Mapper(Protocol):
    """The app's endpoint mapping, as the proxy's thread sees it (implementations must be safe
    to call from another thread than the one that updates them)."""

    def ready(self) -> bool:
        """Whether the app's addresses and port bindings are known yet."""
        ...

    def advertised(self, endpoint: Endpoint) -> Endpoint | NotMapped | None:
        """The published endpoint of one of the app's container endpoints; NotMapped when it is
        the app's but cannot be published; None when it is not the app's."""
        ...

    def container(self, endpoint: Endpoint) -> Endpoint | None:
        """The app's container endpoint that is published as ``endpoint``, if any."""
        ...


class InventoryMapper:
    """A Mapper over the app's container(s) and the advertised host, as replace mode maps them
    (bindings, labels, static mapping); not ready until the first :meth:`update`.

    A container that is paused or unhealthy is still the app: its own requests are mapped.
    """

    def __init__(self) -> None:
        self._current: _Snapshot | None = None

    def update(self, containers: Iterable[Container], advertise_host: str) -> None:
        """Map through these containers from now on (a reference swap: thread safe)."""
        self._current = _Snapshot(containers, advertise_host)

    def ready(self) -> bool:
        return self._current is not None

    def advertised(self, endpoint: Endpoint) -> Endpoint | NotMapped | None:
        current = self._current
        return None if current is None else current.advertised(endpoint)

    def container(self, endpoint: Endpoint) -> Endpoint | None:
        current = self._current
        return None if current is None else current.reverse.get(endpoint)


class _Snapshot:
    def __init__(self, containers: Iterable[Container], advertise_host: str) -> None:
        serving = [dataclasses.replace(c, not_serving="") for c in containers]
        self.index = ContainerIndex(serving)
        self.advertise_host = advertise_host
        self._resolved: dict[Endpoint, Endpoint | NotMapped | None] = {}
        self.reverse: dict[Endpoint, Endpoint] = {}
        for container in serving:
            ports = sorted({p.container_port for p in container.published})
            for address in container.addresses:
                for port in ports:
                    own = Endpoint.of(address, port)
                    found = self.advertised(own)
                    if isinstance(found, Endpoint):
                        # A container on several networks: its first address is shown back.
                        self.reverse.setdefault(found, own)

    def advertised(self, endpoint: Endpoint) -> Endpoint | NotMapped | None:
        # Remembered per snapshot: the app asks about its own few endpoints on every request.
        if endpoint in self._resolved:
            return self._resolved[endpoint]
        if len(self._resolved) >= _REMEMBERED:
            self._resolved.clear()
        found = self._resolve(endpoint)
        self._resolved[endpoint] = found
        return found

    def _resolve(self, endpoint: Endpoint) -> Endpoint | NotMapped | None:
        found = self.index.resolve(endpoint, self.advertise_host)
        if isinstance(found, Mapped):
            return found.advertised
        return None if found.container is None else NotMapped(found.reason)
