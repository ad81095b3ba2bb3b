"""The record of each registration the sidecar took over, kept in ZooKeeper (pure).

A rewritten node lives in the sidecar's session: when that session ends, the node and its
marker are gone, and the provider's original went with the swap. So every taken-over
registration also has a persistent record, ``/dubbo-nat-sidecar/records/<engine>/<key>``,
written in the same ``multi`` that creates the rewrite and deleted in the one that removes
it: it can never lag the write, and it needs no local disk. A restarted sidecar (or the
per-host sidecar of the same engine, when a per-app one is gone for good) reads the records
and restores every rewrite whose container still serves.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace

from sidecar.model import Create, Delete, RegistryNode
from sidecar.ownership import Marker, read_marker

RECORDS_ROOT = "/dubbo-nat-sidecar/records"


def records_parent(engine: str) -> str:
    return f"{RECORDS_ROOT}/{engine}"


def record_path(engine: str, rewritten_path: str) -> str:
    """Where the record of the rewritten node ``rewritten_path`` lives: one per node name,
    so a write that creates or deletes the node creates or deletes exactly its record."""
    key = hashlib.sha256(rewritten_path.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{records_parent(engine)}/{key}"


def encode(node: RegistryNode, marker: Marker) -> bytes:
    """A record: the rewritten node's path and data (its marker), and the marker's
    original data (instances: the application's JSON before the rewrite)."""
    return json.dumps(
        {
            "path": node.path,
            "data": base64.b64encode(node.data).decode(),
            "original_data": base64.b64encode(marker.original_data).decode(),
            "marker": json.loads(marker.encode()),
        },
        separators=(",", ":"),
    ).encode()


def decode(data: bytes) -> tuple[RegistryNode, Marker] | None:
    """The rewritten node (as it was written) and its marker; None for anything else."""
    try:
        doc = json.loads(data)
        parent, _, name = str(doc["path"]).rpartition("/")
        node_data = base64.b64decode(str(doc["data"]), validate=True)
        original_data = base64.b64decode(str(doc["original_data"]), validate=True)
        marker = read_marker(json.dumps(doc["marker"], separators=(",", ":")).encode())
    except (ValueError, KeyError, TypeError, RecursionError):
        return None
    if marker is None or not parent.startswith("/") or not name:
        return None
    return RegistryNode(parent, name, node_data, 0, 0), _with_data(marker, original_data)


def create(engine: str, node: RegistryNode, marker: Marker) -> Create:
    return Create(record_path(engine, node.path), encode(node, marker), persistent=True)


def delete(engine: str, rewritten_path: str) -> Delete:
    return Delete(record_path(engine, rewritten_path), -1)


def is_record(path: str) -> bool:
    return path.startswith(RECORDS_ROOT + "/")


def _with_data(marker: Marker, original_data: bytes) -> Marker:
    return replace(marker, original_data=original_data)
