"""Helpers for planner scenarios: registrations, containers, and applying a plan."""

from __future__ import annotations

import json
from dataclasses import replace

from sidecar.mapping import ContainerIndex
from sidecar.model import (
    Check,
    Container,
    Create,
    Delete,
    PublishedPort,
    RegistryNode,
    SetData,
)
from sidecar.ownership import LocalAddresses, Ownership, read_marker
from sidecar.plan import Decision, Identity, Mode, PathView, Remembered
from sidecar.plan import plan_path as plan_scope
from testbed.dubbo_url import java_url_encode

PROVIDERS = "/dubbo/com.example.DemoService/providers"
ENGINE = "ENGINE-A"
ME = Identity(session=0x1001, engine=ENGINE, advertise_host="192.0.2.10")
PROVIDER_SESSION = 0x2002


def url_name(host: str, port: int = 20880, protocol: str = "dubbo", **extra: str) -> str:
    params = {"application": "demo", "interface": "com.example.DemoService", "side": "provider"}
    params.update(extra)
    query = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
    shown = f"[{host}]" if ":" in host else host
    return java_url_encode(f"{protocol}://{shown}:{port}/com.example.DemoService?{query}")


TRUSTING = Ownership(None, LocalAddresses(frozenset()), {})


def plan_providers(
    nodes: list[RegistryNode],
    index: ContainerIndex,
    me: Identity,
    remembered: list[RegistryNode] | None = None,
    owners: Ownership = TRUSTING,
) -> list[Decision]:
    """The planner on one providers path; ownership unproven and uncontested unless given."""
    memory = [Remembered(n, m) for n in remembered or [] if (m := read_marker(n.data))]
    return plan_scope(PathView(PROVIDERS, nodes, memory), index, me, owners)


def registration(name: str, owner: int = PROVIDER_SESSION, data: bytes = b"") -> RegistryNode:
    return RegistryNode(PROVIDERS, name, data, owner, 0)


def container(
    cid: str = "c1" * 32,
    address: str = "172.17.0.5",
    bindings: tuple[PublishedPort, ...] = (PublishedPort(20880, "0.0.0.0", 32768),),
    name: str = "provider",
    **labels: str,
) -> Container:
    """A running container; ``labels`` are the sidecar's, without the prefix, ``_`` for
    ``-`` (``advertise_host``), ``port_20880`` for ``port.20880``."""
    keys = {k: k.replace("port_", "port.").replace("_", "-") for k in labels}
    found = tuple(sorted((f"dubbo-nat-sidecar.{keys[k]}", v) for k, v in labels.items()))
    return Container(cid, name, "bridge", (address,), bindings, labels=found)


def apply(nodes: list[RegistryNode], decisions: list[Decision], session: int) -> list[RegistryNode]:
    """What ZooKeeper holds after the decisions' transactions ran, each all-or-nothing."""
    state = {n.path: n for n in nodes}
    for decision in decisions:
        if decision.transaction is None:
            continue
        after = dict(state)
        for op in decision.transaction.ops:
            match op:
                case Check(path=path, version=version) | Delete(path=path, version=version):
                    assert after[path].version == version
                    if isinstance(op, Delete):
                        del after[path]
                case Create(path=path, data=data, persistent=persistent):
                    assert path not in after
                    parent, _, name = path.rpartition("/")
                    owner = 0 if persistent else session
                    after[path] = RegistryNode(parent, name, data, owner, 0)
                case SetData(path=path, data=data, version=version):
                    node = after[path]
                    assert node.version == version
                    after[path] = replace(node, data=data, version=version + 1)
        state = after
    return sorted(state.values(), key=lambda n: n.name)


def converge(
    nodes: list[RegistryNode], index: ContainerIndex, me: Identity = ME
) -> list[RegistryNode]:
    """Plan and apply once, then check that a second pass has nothing left to write."""
    after = apply(nodes, plan_providers(nodes, index, me), me.session or 0)
    second = plan_providers(after, index, me)
    assert [d for d in second if d.action.writes] == []
    return after


def only(decisions: list[Decision]) -> Decision:
    assert len(decisions) == 1
    return decisions[0]


def instance_json(
    host: str = "172.17.0.5", port: int = 20880, revision: str = "a1b2c3d4e5"
) -> dict[str, object]:
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
                "dubbo.metadata.revision": revision,
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


MIRROR_ME = replace(ME, mode=Mode.MIRROR)
MIRROR = "/dubbo-external/com.example.DemoService/providers"


def plan_mirror(
    nodes: list[RegistryNode], mirror: list[RegistryNode], index: ContainerIndex
) -> list[Decision]:
    return plan_scope(PathView(PROVIDERS, nodes, (), MIRROR, mirror), index, MIRROR_ME, TRUSTING)
