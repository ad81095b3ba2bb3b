"""Helpers for planner scenarios: registrations, containers, and applying a plan."""

from __future__ import annotations

from sidecar.mapping import ContainerIndex
from sidecar.model import (
    Check,
    Container,
    Create,
    Delete,
    PublishedPort,
    RegistryNode,
)
from sidecar.ownership import LocalAddresses, Ownership, read_marker
from sidecar.plan import Decision, Identity, PathView, Remembered
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
                case Create(path=path, data=data):
                    assert path not in after
                    parent, _, name = path.rpartition("/")
                    after[path] = RegistryNode(parent, name, data, session, 0)
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
