"""Which paths name the app's own endpoints, and how they read once published (pure).

Two kinds of node carry an endpoint in their name: a Dubbo provider URL directly under a
``…/providers`` path (any registry root, any chroot), and an application-level instance
``<services root>/<application>/<ip>:<port>``. A name is the app's when the mapper says its
endpoint is; its published form swaps only the bytes of host:port (``urls``), or is the
instance name of the published endpoint (``instances``). Data follows the name: instance JSON
is rewritten field by field, and data that is just the container address (Curator's default
for Dubbo's provider nodes: the host's IP) reads the published address.

Listings go the other way: in a providers directory or an application's instance directory,
a child whose name is the published form of one of the app's endpoints is shown under the
name the app would have given it (its container endpoint), unless the listing already holds
that name. The app then sees its own registration as it registered it: a provider that also
consumes its own service dials itself at its container address (reachable from where it
runs, unlike the published port behind the host's NAT, which many setups do not loop back),
and nothing the app reads contradicts what it wrote.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from sidecar import instances, urls
from sidecar.model import Endpoint
from sidecar.plan import KNOWN_PROTOCOLS
from sidecar.proxy.mapper import Mapper, NotMapped


@dataclass(frozen=True)
class Renamed:
    """The app's path ``asked`` travels as ``sent``."""

    asked: str
    sent: str
    endpoint: Endpoint
    advertised: Endpoint
    instance: bool


@dataclass(frozen=True)
class Kept:
    """One of the app's paths that travels as it is, and why."""

    path: str
    endpoint: Endpoint
    reason: str


# What the app wrote through the proxy is remembered up to this many bytes (its own few
# registrations; the oldest go first).
WRITTEN_BYTES = 16 << 20


class NotReady(Exception):
    """The path may be the app's, but the mapping is not known yet: the request can wait."""


class Names:
    """The app's names as the proxy rewrites them, for one set of services roots."""

    def __init__(self, mapper: Mapper, services_roots: Sequence[str]) -> None:
        self.mapper = mapper
        self._roots = frozenset(root.rstrip("/") for root in services_roots)
        # Per node the app wrote (as sent): the data sent, and the data the app wrote. What
        # every connection of the app reads back; bounded by its bytes.
        self._written: OrderedDict[str, tuple[bytes, bytes]] = OrderedDict()
        self._written_bytes = 0

    def rename(self, path: str | None, wait: bool) -> Renamed | Kept | None:
        """How ``path`` travels: Renamed, Kept (the app's, but not published), or None (not
        the app's). With ``wait``, a possible name of the app's raises NotReady while the
        mapping is unknown."""
        found = self._endpoint(path) if path else None
        if found is None or path is None:
            return None
        endpoint, url = found
        if not self.mapper.ready():
            if wait:
                raise NotReady
            return Kept(path, endpoint, "the app's port bindings were not known in time")
        target = self.mapper.advertised(endpoint)
        if target is None:
            return None
        if isinstance(target, NotMapped):
            return Kept(path, endpoint, target.reason)
        parent = path.rpartition("/")[0]
        name = url.with_endpoint(target) if url is not None else instances.node_name(target)
        return Renamed(path, f"{parent}/{name}", endpoint, target, url is None)

    def data(self, renamed: Renamed, data: bytes | None) -> tuple[bytes | None, str]:
        """The data to write with a renamed node, and a note on what stays as it was."""
        if data is None:
            return None, ""
        if not renamed.instance:
            return _address_data(renamed, data), ""
        name = renamed.asked.rpartition("/")[2]
        try:
            instance = instances.parse(name, data)
        except instances.MalformedInstance as exc:
            return data, f"instance data left as it is: {exc}"
        host = renamed.endpoint.host

        def host_port(port: int) -> int | None:
            found = self.mapper.advertised(Endpoint(host, port))
            return found.port if isinstance(found, Endpoint) else None

        _, rewritten, unmapped = instances.rewrite(instance, renamed.advertised, host_port)
        if unmapped:
            ports = ", ".join(map(str, unmapped))
            return rewritten, f"ports {ports} are not published: left as they are"
        return rewritten, ""

    def wrote(self, sent: str, sent_data: bytes | None, asked_data: bytes | None) -> None:
        """The app wrote ``asked_data`` to one of its nodes, stored as ``sent_data``."""
        self.forget(sent)
        if sent_data is None or asked_data is None or sent_data == asked_data:
            return
        self._written[sent] = (sent_data, asked_data)
        self._written_bytes += len(sent) + len(sent_data) + len(asked_data)
        while self._written_bytes > WRITTEN_BYTES:
            self.forget(next(iter(self._written)))

    def forget(self, sent: str) -> None:
        """One of the app's nodes is gone (or written anew)."""
        found = self._written.pop(sent, None)
        if found is not None:
            self._written_bytes -= len(sent) + len(found[0]) + len(found[1])

    def read_back(self, renamed: Renamed, data: bytes | None) -> bytes | None:
        """The data of one of the app's nodes as the app reads it: the bytes it wrote, while
        the node holds what the proxy stored for them; else, data that spells the published
        address spells the container's."""
        if data is None:
            return None
        written = self._written.get(renamed.sent)
        if written is not None and written[0] == data:
            return written[1]
        if renamed.instance:
            return data
        back = Renamed(renamed.sent, renamed.asked, renamed.advertised, renamed.endpoint, False)
        return _address_data(back, data)

    def original_path(self, path: str) -> str | None:
        """The app's own name of one of its published nodes (None: not one)."""
        directory, _, child = path.rpartition("/")
        if not self.lists_endpoints(directory):
            return None
        original = self._original(directory, child)
        return f"{directory}/{original}" if original is not None else None

    def lists_endpoints(self, path: str | None) -> bool:
        """Whether the children of ``path`` are named after endpoints."""
        if not path:
            return False
        return path.endswith("/providers") or path.rpartition("/")[0] in self._roots

    def shown(self, directory: str, children: list[str | None]) -> list[str | None] | None:
        """The listing as the app sees it (see the module docstring); None if unchanged."""
        present = set(children)
        shown: list[str | None] = []
        for child in children:
            original = self._original(directory, child) if child else None
            if original is None or original in present:
                shown.append(child)
            else:
                present.add(original)
                shown.append(original)
        return shown if shown != children else None

    def _endpoint(self, path: str) -> tuple[Endpoint, urls.ProviderUrl | None] | None:
        parent, _, name = path.rpartition("/")
        if parent.endswith("/providers"):
            try:
                url = urls.parse(name)
            except urls.MalformedName:
                return None
            return (url.endpoint, url) if url.protocol in KNOWN_PROTOCOLS else None
        if parent.rpartition("/")[0] in self._roots:
            endpoint = instances.endpoint_of(name)
            return None if endpoint is None else (endpoint, None)
        return None

    def _original(self, directory: str, child: str) -> str | None:
        found = self._endpoint(f"{directory}/{child}")
        if found is None:
            return None
        published, url = found
        own = self.mapper.container(published)
        if own is None:
            return None
        return url.with_endpoint(own) if url is not None else instances.node_name(own)


def _address_data(renamed: Renamed, data: bytes) -> bytes:
    """Data that spells the container's address (``ip`` or ``ip:port``) spells the published
    one; any other data stays."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return data
    if _same_address(text, renamed.endpoint.host):
        return renamed.advertised.host.encode()
    host, _, port = text.rpartition(":")
    if (
        port.isdigit()
        and int(port) == renamed.endpoint.port
        and _same_address(host.strip("[]"), renamed.endpoint.host)
    ):
        return str(renamed.advertised).encode()
    return data


def _same_address(text: str, host: str) -> bool:
    if text == host:
        return True
    try:
        return ipaddress.ip_address(text).compressed == host
    except ValueError:
        return False
