"""One path as read, parsed once: each node's name (an instance's data too) and marker is
parsed the first time a step of the pass asks (observe's claims, the planner) and the parsed
value is what every later step gets. A path's parses live as long as its view: one read."""

from __future__ import annotations

from dataclasses import dataclass

from sidecar import instances, urls
from sidecar.model import Endpoint
from sidecar.ownership import Marker, read_marker

# Protocols whose provider URLs carry a TCP endpoint that consumers dial.
KNOWN_PROTOCOLS = frozenset(
    {"dubbo", "tri", "triple", "rest", "grpc", "hessian", "http", "https", "rmi", "webservice",
     "thrift"}
)  # fmt: skip
# Parameters that, with the protocol, tell one exported service from another on one endpoint.
_SERVICE_KEY = ("interface", "group", "version")


@dataclass(frozen=True, slots=True)
class Parsed:
    endpoint: Endpoint
    url: urls.ProviderUrl | None = None
    instance: instances.Instance | None = None

    @property
    def service(self) -> tuple[str, ...] | None:
        """What a newer registration of the same service shares (None: nothing, instances).
        Computed only when asked: it decodes the whole name."""
        if self.url is None:
            return None
        parameters = dict(self.url.parameters)
        return (self.url.protocol, self.url.path, *(parameters.get(k, "") for k in _SERVICE_KEY))


def parse_url(name: str) -> Parsed | str:
    """A provider node's name parsed, or why it cannot be."""
    try:
        url = urls.parse(name)
    except urls.MalformedName as exc:
        return f"malformed node name: {exc}"
    if url.protocol not in KNOWN_PROTOCOLS:
        return f"unknown protocol {url.protocol!r}"
    return Parsed(url.endpoint, url=url)


def parse_instance(name: str, data: bytes) -> Parsed | str:
    """An instance node parsed, or why it cannot be."""
    try:
        instance = instances.parse(name, data)
    except instances.MalformedInstance as exc:
        return f"not an instance this sidecar understands: {exc}"
    return Parsed(instance.endpoint, instance=instance)


class Parses:
    """What the nodes of one path read once parse to, kept with its view (see the module
    docstring). Keyed by what is parsed, so a name met twice in the read (a rewrite's
    original, a mirror's name) is parsed once too."""

    def __init__(self) -> None:
        self._urls: dict[str, Parsed | str] = {}
        self._instances: dict[str, tuple[bytes, Parsed | str]] = {}
        self._markers: dict[bytes, Marker | None] = {}

    def url(self, name: str) -> Parsed | str:
        """A provider node's name parsed (see parse_url)."""
        found = self._urls.get(name)
        if found is None:
            found = self._urls[name] = parse_url(name)
        return found

    def instance(self, name: str, data: bytes) -> Parsed | str:
        """An instance node parsed (see parse_instance)."""
        found = self._instances.get(name)
        if found is None or found[0] != data:
            found = self._instances[name] = (data, parse_instance(name, data))
        return found[1]

    def marker(self, data: bytes) -> Marker | None:
        """The marker in a node's data (see ownership.read_marker)."""
        if data in self._markers:
            return self._markers[data]
        found = self._markers[data] = read_marker(data)
        return found

    def host(self, name: str, instance: bool) -> str | None:
        """The address a node's name registers, from the name alone (None: it does not say;
        see named_host). A provider's parsed name is kept for the planner."""
        parsed = None if instance else self.url(name)
        return parsed.endpoint.host if isinstance(parsed, Parsed) else named_host(name, instance)


def named_host(name: str, instance: bool) -> str | None:
    """The address a node's name registers, read from the name alone (None: the name does not
    say; an instance's name usually does, as its id)."""
    if instance:
        endpoint = instances.endpoint_of(name)
        return endpoint.host if endpoint is not None else None
    try:
        return urls.parse(name).endpoint.host
    except urls.MalformedName:
        return None
