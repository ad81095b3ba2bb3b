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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sidecar.model import Endpoint

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


def parse(name: str, data: bytes) -> Instance:
    """Parse an instance node; raise MalformedInstance instead of guessing."""
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise MalformedInstance("data is not JSON") from exc
    if not isinstance(doc, dict):
        raise MalformedInstance("data is not a JSON object")
    address, port = doc.get("address"), doc.get("port")
    if not isinstance(address, str) or not isinstance(port, int) or not 0 < port < 65536:
        raise MalformedInstance("no address and port")
    try:
        endpoint = Endpoint.of(ipaddress.ip_address(address.strip("[]")).compressed, port)
    except ValueError as exc:
        raise MalformedInstance(f"address {address!r} is not an IP address") from exc
    if endpoint_of(name) != endpoint:
        raise MalformedInstance(f"node name {name!r} disagrees with {endpoint}")
    metadata = _metadata(doc)
    others = {p for p, _ in _endpoint_ports(metadata)} | set(_metadata_service_port(metadata))
    return Instance(name, endpoint, str(doc.get("name", "")), tuple(sorted(others - {port})), doc)


def rewrite(
    instance: Instance, advertised: Endpoint, host_port: Callable[[int], int | None]
) -> tuple[str, bytes, list[int]]:
    """The rewritten node name and data, and the ports that stay as they are because
    ``host_port`` maps them to nothing (not published)."""
    doc = json.loads(json.dumps(instance.doc))  # a deep copy that keeps the key order
    new_id = node_name(advertised)
    doc["id"] = new_id
    doc["address"] = advertised.host
    doc["port"] = advertised.port
    payload = doc.get("payload")
    if isinstance(payload, dict) and "id" in payload:
        payload["id"] = new_id
    unmapped: list[int] = []

    def mapped(port: int) -> int:
        if port == instance.endpoint.port:
            return advertised.port
        target = host_port(port)
        if target is None:
            unmapped.append(port)
            return port
        return target

    metadata = _metadata(doc)
    if ENDPOINTS in metadata:
        endpoints = json.loads(metadata[ENDPOINTS])
        for entry in endpoints:
            entry["port"] = mapped(int(entry["port"]))
        metadata[ENDPOINTS] = json.dumps(endpoints, separators=(",", ":"))
    if METADATA_SERVICE in metadata:
        params = json.loads(metadata[METADATA_SERVICE])
        if "port" in params:
            new = mapped(int(params["port"]))
            params["port"] = str(new) if isinstance(params["port"], str) else new
            metadata[METADATA_SERVICE] = json.dumps(params, separators=(",", ":"))
    data = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    return new_id, data, sorted(set(unmapped))


def _metadata(doc: dict[str, Any]) -> dict[str, Any]:
    payload = doc.get("payload")
    metadata = payload.get("metadata") if isinstance(payload, dict) else None
    return metadata if isinstance(metadata, dict) else {}


def _endpoint_ports(metadata: dict[str, Any]) -> list[tuple[int, str]]:
    try:
        entries = json.loads(metadata.get(ENDPOINTS) or "[]")
        return [(int(e["port"]), str(e.get("protocol", ""))) for e in entries]
    except (ValueError, TypeError, KeyError) as exc:
        raise MalformedInstance(f"{ENDPOINTS} is not a list of ports") from exc


def _metadata_service_port(metadata: dict[str, Any]) -> list[int]:
    try:
        params = json.loads(metadata.get(METADATA_SERVICE) or "{}")
        return [int(params["port"])] if "port" in params else []
    except (ValueError, TypeError) as exc:
        raise MalformedInstance(f"{METADATA_SERVICE} has no readable port") from exc


def endpoint_of(name: str) -> Endpoint | None:
    """The endpoint an instance node's name spells (``<ip>:<port>``), if it spells one."""
    host, _, port = name.rpartition(":")
    if not port.isdigit():
        return None
    try:
        return Endpoint.of(ipaddress.ip_address(host.strip("[]")).compressed, int(port))
    except ValueError:
        return None


def node_name(endpoint: Endpoint) -> str:
    """The name (and id) of the instance at ``endpoint``."""
    return f"{endpoint.host}:{endpoint.port}"
