"""Where application-level instances (Dubbo 3, Curator JSON) are parsed and rewritten.

An instance node is ``/<services root>/<application>/<host>:<port>``; its data is Curator's
JSON. The address appears in the node name, ``id``, ``address``, ``port``, ``payload.id``,
and as ports inside two JSON strings of ``payload.metadata``: ``dubbo.endpoints`` and
``dubbo.metadata-service.url-params``. Those change; every other field, and the order of the
keys, stays as it was.
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sidecar.hosts import parse_port
from sidecar.model import Endpoint
from sidecar.quoting import quote

ENDPOINTS = "dubbo.endpoints"
METADATA_SERVICE = "dubbo.metadata-service.url-params"


class MalformedInstance(ValueError):
    """The node is not a Curator service instance this sidecar understands."""


@dataclass(frozen=True)
class Instance:
    """A parsed instance node."""

    name: str
    endpoint: Endpoint
    application: str
    other_ports: tuple[int, ...]
    doc: dict[str, Any] = field(compare=False, repr=False)


# Curator's JSON is three levels deep: anything far deeper is not an instance, and would make
# the recursive JSON reader and writer run out of stack.
_MAX_DEPTH = 32


def parse(name: str, data: bytes) -> Instance:
    """Parse an instance node; raise MalformedInstance instead of guessing.

    Everything ``rewrite`` will change is checked here, so that rewriting a parsed instance
    cannot fail.
    """
    instance = parse_data(name, data)
    if endpoint_of(name) != instance.endpoint:
        raise MalformedInstance(f"node name {quote(name)} disagrees with {instance.endpoint}")
    return instance


def parse_data(name: str, data: bytes) -> Instance:
    """The instance a node's data describes, whatever its name says (an instance rewritten
    in place carries the advertised endpoint under its container endpoint's name)."""
    doc = _json(data, "data")
    if not isinstance(doc, dict):
        raise MalformedInstance("data is not a JSON object")
    address, port = doc.get("address"), _int_port(doc.get("port"))
    if not isinstance(address, str) or port is None:
        raise MalformedInstance("no address and port")
    try:
        endpoint = Endpoint.of(ipaddress.ip_address(address.strip("[]")).compressed, port)
    except ValueError:
        raise MalformedInstance(f"address {quote(address)} is not an IP address") from None
    return _instance(name, endpoint, doc)


def _instance(name: str, endpoint: Endpoint, doc: dict[str, Any]) -> Instance:
    metadata = _metadata(doc)
    others = {_port_of(e, ENDPOINTS) for e in _endpoints(metadata)}
    params = _metadata_service(metadata)
    if params is not None and "port" in params:
        others.add(_port_of(params, METADATA_SERVICE))
    application = doc.get("name")
    return Instance(
        name,
        endpoint,
        application if isinstance(application, str) else "",
        tuple(sorted(others - {endpoint.port})),
        doc,
    )


def rewrite(
    instance: Instance, advertised: Endpoint, host_port: Callable[[int], int | None]
) -> tuple[str, bytes, list[int]]:
    """The rewritten node name and data, and the ports that stay as they are because
    ``host_port`` maps them to nothing (not published)."""
    unmapped: list[int] = []

    def mapped(port: int) -> int:
        if port == instance.endpoint.port:
            return advertised.port
        target = host_port(port)
        if target is None:
            unmapped.append(port)
            return port
        return target

    doc = _readdressed(instance, advertised, node_name(advertised), mapped)
    return node_name(advertised), _dumps(doc), sorted(set(unmapped))


def dumps(instance: Instance) -> bytes:
    """An instance's data, as this module writes it (compact JSON, the key order kept)."""
    return _dumps(instance.doc)


def _dumps(doc: dict[str, Any]) -> bytes:
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode()
    except UnicodeEncodeError:
        # A lone surrogate (written as an escape in the original) has no UTF-8 form: write
        # every non-ASCII character as an escape instead, as JSON allows.
        return json.dumps(doc, separators=(",", ":")).encode()


def restore(
    instance: Instance, original: Endpoint, container_port: Callable[[int], int | None]
) -> Instance:
    """The instance as its provider wrote it, from one rewritten in place: the address
    fields from ``original`` (the endpoint its node name registers), every other port mapped
    back by ``container_port`` (None: that port was left as it was)."""

    def back(port: int) -> int:
        if port == instance.endpoint.port:
            return original.port
        found = container_port(port)
        return port if found is None else found

    doc = _readdressed(instance, original, instance.name, back)
    return _instance(instance.name, original, doc)


def _readdressed(
    instance: Instance, endpoint: Endpoint, new_id: str, port_of: Callable[[int], int]
) -> dict[str, Any]:
    """A copy of the instance's document with its address fields naming ``endpoint`` (its id
    ``new_id``) and every port in its metadata passed through ``port_of``, each kept a
    number or a string as it was. Empty values were read as no ports: they stay as they are."""
    doc: dict[str, Any] = json.loads(json.dumps(instance.doc))  # a deep copy, key order kept
    doc["id"] = new_id
    doc["address"] = endpoint.host
    doc["port"] = endpoint.port
    payload = doc.get("payload")
    if isinstance(payload, dict) and "id" in payload:
        payload["id"] = new_id

    def mapped(holder: dict[str, Any], what: str) -> None:
        target = port_of(_port_of(holder, what))
        holder["port"] = str(target) if isinstance(holder["port"], str) else target

    metadata = _metadata(doc)
    endpoints = _endpoints(metadata)
    if endpoints:
        for entry in endpoints:
            mapped(entry, ENDPOINTS)
        metadata[ENDPOINTS] = json.dumps(endpoints, separators=(",", ":"))
    params = _metadata_service(metadata)
    if params is not None and "port" in params:
        mapped(params, METADATA_SERVICE)
        metadata[METADATA_SERVICE] = json.dumps(params, separators=(",", ":"))
    return doc


def _json(text: str | bytes, what: str) -> Any:
    """JSON that Curator and Jackson would read back as it was; MalformedInstance if not."""
    try:
        value = json.loads(text, parse_constant=_not_finite, parse_float=_finite)
    except (ValueError, RecursionError) as exc:
        raise MalformedInstance(f"{what} is not JSON: {quote(str(exc))}") from None
    if not _depth_at_most(value, _MAX_DEPTH):
        raise MalformedInstance(f"{what} is nested deeper than {_MAX_DEPTH} levels")
    return value


def _not_finite(constant: str) -> float:
    raise ValueError(f"{constant} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{quote(text)} is too large for a number")
    return value


def _depth_at_most(value: Any, limit: int) -> bool:
    level: list[Any] = [value]
    for _ in range(limit + 1):
        level = [
            child
            for item in level
            if isinstance(item, (dict, list))
            for child in (item.values() if isinstance(item, dict) else item)
        ]
        if not level:
            return True
    return False


def _metadata(doc: dict[str, Any]) -> dict[str, Any]:
    payload = doc.get("payload")
    metadata = payload.get("metadata") if isinstance(payload, dict) else None
    return metadata if isinstance(metadata, dict) else {}


def _endpoints(metadata: dict[str, Any]) -> list[dict[str, Any]]:
    """The entries of ``dubbo.endpoints`` (none when it is absent, null or empty)."""
    text = metadata.get(ENDPOINTS)
    if text is None or text == "":
        return []
    entries = _json(text, ENDPOINTS) if isinstance(text, str) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise MalformedInstance(f"{ENDPOINTS} is not a list of ports")
    return entries


def _metadata_service(metadata: dict[str, Any]) -> dict[str, Any] | None:
    """The parameters in ``dubbo.metadata-service.url-params`` (None when absent, null or empty)."""
    text = metadata.get(METADATA_SERVICE)
    if text is None or text == "":
        return None
    params = _json(text, METADATA_SERVICE) if isinstance(text, str) else None
    if not isinstance(params, dict):
        raise MalformedInstance(f"{METADATA_SERVICE} is not a JSON object")
    return params


def _port_of(holder: dict[str, Any], what: str) -> int:
    """The ``port`` of an entry: a JSON number, or a string of ASCII digits (1-65535)."""
    value = holder.get("port")
    port = _int_port(value)
    if port is None and isinstance(value, str):
        try:
            port = parse_port(value)
        except ValueError:
            port = None
    if port is None:
        raise MalformedInstance(f"{what}: {quote(value)} is not a port")
    return port


def _int_port(value: object) -> int | None:
    # bool is an int to Python, but true is not a port.
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536:
        return value
    return None


def endpoint_of(name: str) -> Endpoint | None:
    """The endpoint an instance node's name spells (``<ip>:<port>``), if it spells one."""
    host, _, port = name.rpartition(":")
    try:
        return Endpoint.of(ipaddress.ip_address(host.strip("[]")).compressed, parse_port(port))
    except ValueError:
        return None


def node_name(endpoint: Endpoint) -> str:
    """The name (and id) of the instance at ``endpoint``."""
    return f"{endpoint.host}:{endpoint.port}"
