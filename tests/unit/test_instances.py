"""Application-level instances (Curator JSON): only the address fields change, in place."""

from __future__ import annotations

import json

import pytest

from sidecar import instances
from sidecar.mapping import ContainerIndex
from sidecar.model import Container, Create, Delete, Endpoint, PublishedPort, RegistryNode
from sidecar.ownership import LocalAddresses, Ownership
from sidecar.plan import Action, Identity, PathView, Remembered
from sidecar.plan import plan_path as plan_providers

APP = "/services/shop-provider"
ME = Identity(session=0x1001, engine="ENGINE-A", advertise_host="192.0.2.10")
TRUSTING = Ownership(None, LocalAddresses(frozenset()), {})


def instance_json(host: str = "172.17.0.5", port: int = 20880) -> dict[str, object]:
    """The shape Dubbo 3's ZookeeperServiceDiscovery writes through Curator."""
    endpoints = json.dumps(
        [{"port": port, "protocol": "dubbo"}, {"port": 50051, "protocol": "tri"}],
        separators=(",", ":"),
    )
    url_params = json.dumps(
        {"connections": "1", "version": "1.0.0", "dubbo": "2.0.2", "release": "3.2.0",
         "side": "provider", "port": str(port), "protocol": "dubbo"},
        separators=(",", ":"),
    )  # fmt: skip
    return {
        "name": "shop-provider",
        "id": f"{host}:{port}",
        "address": host,
        "port": port,
        "sslPort": None,
        "payload": {
            "@class": "org.apache.dubbo.registry.zookeeper.ZookeeperInstance",
            "id": f"{host}:{port}",
            "name": "shop-provider",
            "metadata": {
                "dubbo.endpoints": endpoints,
                "dubbo.metadata-service.url-params": url_params,
                "dubbo.metadata.revision": "a1b2c3d4e5",
                "dubbo.metadata.storage-type": "local",
                "timestamp": "1795889781982",
            },
        },
        "registrationTimeUTC": 1795889781982,
        "serviceType": "DYNAMIC",
        "uriSpec": None,
    }


def as_bytes(doc: dict[str, object]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


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


def provider_container() -> Container:
    bindings = (PublishedPort(20880, "0.0.0.0", 32768), PublishedPort(50051, "0.0.0.0", 40051))
    return Container("c" * 64, "shop-1", "bridge", ("172.17.0.5",), bindings)


def test_instance_is_swapped_atomically_with_the_port_override_warning() -> None:
    """An instance of a local container is replaced by its rewrite in one transaction; the
    reason warns that Dubbo 3.1+ consumers may take the port from the metadata instead; a
    second pass with the rewrite remembered keeps it."""
    original = RegistryNode(APP, "172.17.0.5:20880", as_bytes(instance_json()), 0x2002, 0)
    index = ContainerIndex([provider_container()])
    scope = PathView(APP, [original], instances=True)

    [decision] = plan_providers(scope, index, ME, TRUSTING)

    assert decision.action is Action.REWRITE
    assert decision.transaction is not None
    delete, create = decision.transaction.ops
    assert delete == Delete(original.path, 0)
    assert isinstance(create, Create)
    assert create.path == f"{APP}/192.0.2.10:32768"
    assert "Dubbo 3.1+ consumers may take the port from the provider's metadata" in decision.reason
    assert "register-mode=interface" in decision.reason
    assert decision.marker is not None
    written = RegistryNode(APP, "192.0.2.10:32768", create.data, ME.session or 0, 0)
    again = PathView(APP, [written], [Remembered(written, decision.marker)], instances=True)
    [second] = plan_providers(again, index, ME, TRUSTING)
    assert second.action is Action.KEEP


def test_same_port_on_the_host_gives_no_warning_and_vanished_instance_is_restored() -> None:
    """With the container port published as the same host port there is nothing to warn
    about; a rewrite lost with the sidecar's session is re-created from memory."""
    same = Container("c" * 64, "shop-1", "bridge", ("172.17.0.5",),
                     (PublishedPort(20880, "0.0.0.0", 20880),))  # fmt: skip
    original = RegistryNode(APP, "172.17.0.5:20880", as_bytes(instance_json()), 0x2002, 0)
    index = ContainerIndex([same])
    [decision] = plan_providers(PathView(APP, [original], instances=True), index, ME, TRUSTING)
    assert "Dubbo 3.1+" not in decision.reason
    assert decision.marker is not None
    assert decision.transaction is not None
    create = decision.transaction.ops[-1]
    assert isinstance(create, Create)
    written = RegistryNode(APP, "192.0.2.10:20880", create.data, 0x0999, 0)
    lost = PathView(APP, [], [Remembered(written, decision.marker)], instances=True)
    [restore] = plan_providers(lost, index, ME, TRUSTING)
    assert restore.action is Action.RESTORE
    assert restore.transaction is not None
    assert restore.transaction.ops == (Create(f"{APP}/192.0.2.10:20880", create.data),)
