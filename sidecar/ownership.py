"""The marker the sidecar writes into each rewritten node, so any later run can recognise it."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sidecar.model import Endpoint

TAG = "dubbo-nat-sidecar"
_PREFIX = b'{"' + TAG.encode() + b'":'


@dataclass(frozen=True)
class Marker:
    """Data of a rewritten node: what it replaced, and which container on which engine backs it."""

    original: str
    container_endpoint: Endpoint
    container: str
    engine: str

    def encode(self) -> bytes:
        return json.dumps(
            {
                TAG: 1,
                "original": self.original,
                "container_endpoint": str(self.container_endpoint),
                "container": self.container,
                "engine": self.engine,
            },
            separators=(",", ":"),
        ).encode()


def read_marker(data: bytes) -> Marker | None:
    """The marker in a node's data, or None for a node the sidecar did not write."""
    if not data.startswith(_PREFIX):
        return None
    try:
        doc = json.loads(data)
        host, _, port = str(doc["container_endpoint"]).rpartition(":")
        return Marker(
            original=str(doc["original"]),
            container_endpoint=Endpoint.of(host.strip("[]"), int(port)),
            container=str(doc["container"]),
            engine=str(doc["engine"]),
        )
    except (ValueError, KeyError, TypeError):
        return None
