"""Helpers for proxy tests: jute frames as ZooKeeper clients and servers write them."""

from __future__ import annotations

import struct

from sidecar.model import Container, PublishedPort
from sidecar.proxy import jute
from sidecar.proxy.mapper import InventoryMapper
from tests.unit.scenarios import url_name

APP_ADDRESS = "172.17.0.5"
ADVERTISED = "192.0.2.10"
PROVIDERS = "/dubbo/com.example.DemoService/providers"
MINE = f"{PROVIDERS}/{url_name(APP_ADDRESS, 20880)}"
PUBLISHED = f"{PROVIDERS}/{url_name(ADVERTISED, 32768)}"
OTHERS = f"{PROVIDERS}/{url_name('10.1.4.2', 20880)}"
OPEN_ACL = struct.pack(">i", 1) + struct.pack(">i", 31) + jute.encode_string("world")
OPEN_ACL += jute.encode_string("anyone")
STAT = bytes(range(jute.STAT))


def app_container(*published: PublishedPort) -> Container:
    ports = published or (PublishedPort(20880, "0.0.0.0", 32768),
                          PublishedPort(50051, "0.0.0.0", 40051))  # fmt: skip
    return Container("c" * 64, "shop-1", "bridge", (APP_ADDRESS,), ports)


def mapper(*containers: Container) -> InventoryMapper:
    found = InventoryMapper()
    found.update(containers or (app_container(),), ADVERTISED)
    return found


def request(xid: int, opcode: int, body: bytes) -> bytes:
    return jute.frame(struct.pack(">ii", xid, opcode) + body)


def reply(xid: int, body: bytes, err: int = 0, zxid: int = 0x100) -> bytes:
    return jute.frame(struct.pack(">iqi", xid, zxid, err) + body)


def create_body(path: str, data: bytes | None, flags: int = 1, ttl: int | None = None) -> bytes:
    body = jute.encode_string(path) + jute.encode_buffer(data) + OPEN_ACL + struct.pack(">i", flags)
    return body + (struct.pack(">q", ttl) if ttl is not None else b"")


def path_body(path: str, tail: bytes = b"\x01") -> bytes:
    return jute.encode_string(path) + tail


def set_data_body(path: str, data: bytes, version: int = -1) -> bytes:
    return jute.encode_string(path) + jute.encode_buffer(data) + struct.pack(">i", version)


def multi_body(*ops: tuple[int, bytes]) -> bytes:
    parts = [jute.encode_multi_header(kind, False, -1) + body for kind, body in ops]
    return b"".join(parts) + jute.encode_multi_header(-1, True, -1)


def event(path: str, kind: int = 2, state: int = 3) -> bytes:
    return reply(jute.WATCH_EVENT, struct.pack(">ii", kind, state) + jute.encode_string(path))


def body_strings(frame: bytes, offset: int) -> list[str | None]:
    """Every string of a frame from ``offset`` on, read as a vector would be."""
    return jute.Cursor(frame, offset).strings() or []
