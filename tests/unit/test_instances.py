"""Application-level instances (Curator JSON): only the address fields change, and a rewrite
can be undone."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar import instances
from sidecar.model import Endpoint
from tests.unit.scenarios import as_bytes, instance_json


def test_rewrite_changes_every_address_field_and_nothing_else() -> None:
    """Name, id, address, port, payload.id and the ports inside the two metadata JSON strings
    change; the key order and every other field (revision included) stay as they were."""
    original = instance_json()
    parsed = instances.parse("172.17.0.5:20880", as_bytes(original))
    ports = {50051: 40051}

    name, data, unmapped = instances.rewrite(
        parsed, Endpoint("192.0.2.10", 32768), lambda p: ports.get(p)
    )

    assert name == "192.0.2.10:32768"
    assert unmapped == []
    doc = json.loads(data)
    assert list(doc) == list(original)
    assert list(doc["payload"]["metadata"]) == list(original["payload"]["metadata"])  # type: ignore[index]
    assert (doc["id"], doc["address"], doc["port"]) == ("192.0.2.10:32768", "192.0.2.10", 32768)
    assert doc["payload"]["id"] == "192.0.2.10:32768"
    metadata = doc["payload"]["metadata"]
    assert json.loads(metadata["dubbo.endpoints"]) == [
        {"port": 32768, "protocol": "dubbo"},
        {"port": 40051, "protocol": "tri"},
    ]
    assert json.loads(metadata["dubbo.metadata-service.url-params"])["port"] == "32768"
    unchanged = {k: v for k, v in doc.items() if k not in ("id", "address", "port", "payload")}
    assert unchanged == {k: v for k, v in original.items() if k in unchanged}
    assert metadata["dubbo.metadata.revision"] == "a1b2c3d4e5"
    assert metadata["timestamp"] == "1795889781982"


def test_unpublished_extra_port_is_left_and_reported() -> None:
    """A protocol port without a binding keeps its number and is named in the result."""
    parsed = instances.parse("172.17.0.5:20880", as_bytes(instance_json()))
    _, data, unmapped = instances.rewrite(parsed, Endpoint("192.0.2.10", 32768), lambda p: None)
    assert unmapped == [50051]
    endpoints = json.loads(json.loads(data)["payload"]["metadata"]["dubbo.endpoints"])
    assert {"port": 50051, "protocol": "tri"} in endpoints


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("172.17.0.5:20880", b"not json", "data is not JSON"),
        ("172.17.0.5:20880", b"[1, 2]", "not a JSON object"),
        ("172.17.0.5:20880", b'{"address": "172.17.0.5"}', "no address and port"),
        ("172.17.0.6:20880", as_bytes(instance_json()), "disagrees"),
        ("shop:20880", as_bytes({**instance_json(), "address": "shop"}), "not an IP address"),
    ],
)
def test_malformed_instances_are_rejected(name: str, data: bytes, message: str) -> None:
    """Nodes that are not instances this sidecar understands raise MalformedInstance."""
    with pytest.raises(instances.MalformedInstance, match=message):
        instances.parse(name, data)


def test_registered_endpoint_and_data_are_read_apart() -> None:
    """An instance rewritten in place has a name and data that disagree: parse refuses it,
    parse_data reads its data, endpoint_of its name."""
    data = as_bytes(instance_json("192.0.2.10", 32768))
    with pytest.raises(instances.MalformedInstance, match="disagrees"):
        instances.parse("172.17.0.5:20880", data)
    assert instances.parse_data("172.17.0.5:20880", data).endpoint == Endpoint("192.0.2.10", 32768)
    assert instances.endpoint_of("172.17.0.5:20880") == Endpoint("172.17.0.5", 20880)


def test_restore_undoes_a_rewrite_byte_for_byte() -> None:
    """Restoring a rewritten instance for its container endpoint, with the ports mapped back,
    gives back exactly the provider's data (an unpublished port stays as it was)."""
    original = as_bytes(instance_json())
    parsed = instances.parse("172.17.0.5:20880", original)
    _, data, _ = instances.rewrite(parsed, Endpoint("192.0.2.10", 32768), lambda p: None)
    rewritten = instances.parse_data("172.17.0.5:20880", data)

    back = instances.restore(rewritten, Endpoint("172.17.0.5", 20880), lambda p: None)

    assert instances.dumps(back) == original
    assert back.endpoint == Endpoint("172.17.0.5", 20880)


def test_empty_metadata_ports_are_left_as_they_are() -> None:
    """Empty endpoint lists read as no ports; a rewrite leaves them as they were."""
    doc = instance_json()
    doc["payload"]["metadata"].update(  # type: ignore[index]
        {"dubbo.endpoints": "", "dubbo.metadata-service.url-params": ""}
    )
    parsed = instances.parse("172.17.0.5:20880", as_bytes(doc))
    _, data, _ = instances.rewrite(parsed, Endpoint("192.0.2.10", 32768), lambda p: None)
    metadata = json.loads(data)["payload"]["metadata"]
    assert (metadata["dubbo.endpoints"], metadata["dubbo.metadata-service.url-params"]) == ("", "")


_CONTAINER_PORTS = st.integers(1, 29_999)
_HOST_PORTS = st.integers(30_000, 65_535)


@settings(max_examples=200, deadline=None)
@given(
    main=_CONTAINER_PORTS,
    others=st.lists(_CONTAINER_PORTS, max_size=4, unique=True),
    published=st.data(),
    first=st.ip_addresses(v=4).map(str),
    second=st.ip_addresses(v=4).map(str),
)
def test_rewrite_in_place_can_always_be_undone_and_redone(
    main: int, others: list[int], published: st.DataObject, first: str, second: str
) -> None:
    """For any instance (any extra ports, published or not) and any two advertised hosts:
    restoring the first rewrite gives back the provider's bytes, and rewriting that again for
    the second host equals rewriting the original for it directly."""
    others = [p for p in others if p != main]
    endpoints = [{"port": main, "protocol": "dubbo"}] + [
        {"port": p, "protocol": f"p{i}"} for i, p in enumerate(others)
    ]
    doc = instance_json(port=main)
    doc["payload"]["metadata"]["dubbo.endpoints"] = json.dumps(  # type: ignore[index]
        endpoints, separators=(",", ":")
    )
    original = as_bytes(doc)
    host_ports = published.draw(
        st.lists(_HOST_PORTS, min_size=len(others) + 1, max_size=len(others) + 1, unique=True)
    )
    is_published = published.draw(st.lists(st.booleans(), min_size=len(others),
                                            max_size=len(others)))  # fmt: skip
    forward = {p: h for p, h, on in zip(others, host_ports[1:], is_published, strict=True) if on}
    backward = {h: p for p, h in forward.items()}
    name = f"172.17.0.5:{main}"
    parsed = instances.parse(name, original)

    _, data, _ = instances.rewrite(parsed, Endpoint(first, host_ports[0]), forward.get)
    back = instances.restore(
        instances.parse_data(name, data), Endpoint("172.17.0.5", main), backward.get
    )
    assert instances.dumps(back) == original
    again = instances.rewrite(back, Endpoint(second, host_ports[0]), forward.get)
    assert again == instances.rewrite(parsed, Endpoint(second, host_ports[0]), forward.get)
