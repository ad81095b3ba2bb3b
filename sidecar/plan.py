"""The planner (pure): registry nodes + local containers -> the decision for every node.

``run`` applies the transactions of these decisions, ``plan`` prints them: both come from here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from urllib.parse import unquote

from sidecar import urls
from sidecar.mapping import ContainerIndex, Mapped, Unmapped
from sidecar.model import (
    Check,
    Container,
    Create,
    Delete,
    Endpoint,
    Op,
    RegistryNode,
    Transaction,
)
from sidecar.ownership import Marker, read_marker

# Protocols whose provider URLs carry a TCP endpoint that consumers dial.
KNOWN_PROTOCOLS = frozenset(
    {
        "dubbo",
        "tri",
        "triple",
        "rest",
        "grpc",
        "hessian",
        "http",
        "https",
        "rmi",
        "webservice",
        "thrift",
    }
)


class Action(StrEnum):
    REWRITE = "rewrite"  # swap a container-address registration for the advertised one
    UPDATE = "update"  # re-point, or take over from an earlier run, a rewritten registration
    REMOVE = "remove"  # a rewritten registration whose container is gone
    DROP_ORIGINAL = "drop-original"  # provider re-registered; its rewritten twin already exists
    KEEP = "keep"  # rewritten by this sidecar and still right
    LEAVE = "leave"  # not ours to change, with the reason

    @property
    def writes(self) -> bool:
        return self not in (Action.KEEP, Action.LEAVE)


@dataclass(frozen=True)
class Identity:
    """Who is planning: the sidecar's ZooKeeper session, its Docker engine, its advertised host.

    ``session`` is None for an observer (``plan``), which counts every node of its engine's
    sidecar as managed instead of taking it over.
    """

    session: int | None
    engine: str
    advertise_host: str


@dataclass(frozen=True)
class Decision:
    """What happens to one registry node, why, and the transaction that does it."""

    action: Action
    node: RegistryNode
    reason: str
    original: Endpoint | None = None
    advertised: Endpoint | None = None
    container: Container | None = None
    transaction: Transaction | None = None
    local: bool = True

    @property
    def interface(self) -> str:
        return interface_of(self.node.parent)


def interface_of(providers_path: str) -> str:
    """``/dubbo/com.x.Svc/providers`` -> ``com.x.Svc``."""
    return unquote(providers_path.rstrip("/").rsplit("/", 2)[-2])


def plan_providers(
    nodes: Sequence[RegistryNode], containers: ContainerIndex, me: Identity
) -> list[Decision]:
    """Decide every node of one ``providers`` path; applying the result twice changes nothing."""
    by_name = {node.name: node for node in nodes}
    decisions = []
    for node in nodes:
        marker = read_marker(node.data)
        if marker is None:
            decisions.append(_plan_registration(node, by_name, containers, me))
        else:
            decisions.append(_plan_rewritten(node, marker, by_name, containers, me))
    return decisions


def _plan_registration(
    node: RegistryNode,
    by_name: Mapping[str, RegistryNode],
    containers: ContainerIndex,
    me: Identity,
) -> Decision:
    try:
        url = urls.parse(node.name)
    except urls.MalformedName as exc:
        return Decision(Action.LEAVE, node, f"malformed node name: {exc}")
    if url.protocol not in KNOWN_PROTOCOLS:
        return Decision(Action.LEAVE, node, f"unknown protocol {url.protocol!r}", url.endpoint)
    found = containers.resolve(url.endpoint, me.advertise_host)
    if isinstance(found, Unmapped):
        return Decision(
            Action.LEAVE,
            node,
            found.reason,
            url.endpoint,
            container=found.container,
            local=found.local,
        )
    target_name = url.with_endpoint(found.advertised)
    target = by_name.get(target_name)
    base = Decision(Action.REWRITE, node, "", url.endpoint, found.advertised, found.container)
    if target is None:
        marker = Marker(node.name, url.endpoint, found.container.id, me.engine)
        ops = (
            Delete(node.path, node.version),
            Create(f"{node.parent}/{target_name}", marker.encode()),
        )
        return _with(base, Action.REWRITE, _published_reason(found), ops)
    twin = read_marker(target.data)
    if twin is not None and twin.engine == me.engine and twin.original == node.name:
        return _with(
            base,
            Action.DROP_ORIGINAL,
            "provider registered its container address again; its rewrite is already there",
            (Check(target.path, target.version), Delete(node.path, node.version)),
        )
    return _with(
        base, Action.LEAVE, "the rewritten name is already registered by another party", ()
    )


def _plan_rewritten(
    node: RegistryNode,
    marker: Marker,
    by_name: Mapping[str, RegistryNode],
    containers: ContainerIndex,
    me: Identity,
) -> Decision:
    if marker.engine != me.engine:
        return Decision(
            Action.LEAVE,
            node,
            f"rewritten by the sidecar of Docker engine {marker.engine[:12]}",
            marker.container_endpoint,
            local=False,
        )
    gone = Container(marker.container, marker.container[:12], network_mode="")
    base = Decision(Action.KEEP, node, "", marker.container_endpoint, container=gone)
    try:
        original = urls.parse(marker.original)
    except urls.MalformedName:
        return _with(base, Action.LEAVE, "its marker names an unreadable original", ())
    found = containers.resolve(original.endpoint, me.advertise_host)
    removal = _removal_reason(marker, found, containers)
    if removal is not None:
        return _with(base, Action.REMOVE, removal, (Delete(node.path, node.version),))
    assert isinstance(found, Mapped)
    base = Decision(Action.KEEP, node, "", original.endpoint, found.advertised, found.container)
    wanted = original.with_endpoint(found.advertised)
    if wanted == node.name and me.session in (None, node.owner):
        return _with(
            base, Action.KEEP, f"managed by this host's sidecar (session 0x{node.owner:x})", ()
        )
    if wanted != node.name and wanted in by_name:
        return _with(
            base,
            Action.REMOVE,
            "duplicate of a registration already at the advertised address",
            (Delete(node.path, node.version),),
        )
    if wanted == node.name:
        reason = f"taking over from an earlier run (session 0x{node.owner:x})"
    else:
        reason = f"advertised address changed from {urls.parse(node.name).endpoint}"
    ops = (Delete(node.path, node.version), Create(f"{node.parent}/{wanted}", node.data))
    return _with(base, Action.UPDATE, reason, ops)


def _removal_reason(
    marker: Marker, found: Mapped | Unmapped, containers: ContainerIndex
) -> str | None:
    if isinstance(found, Mapped):
        if found.container.id == marker.container:
            return None
        return f"address now belongs to container {found.container.name}"
    if marker.container not in containers.by_id:
        return f"container {marker.container[:12]} is no longer running"
    return found.reason


def _published_reason(found: Mapped) -> str:
    binding = found.binding
    source = "advertise host" if binding.any_host_address else f"binding host IP {binding.host_ip}"
    return (
        f"container {found.container.name} publishes {binding.container_port}/tcp "
        f"on host port {binding.host_port} ({source})"
    )


def _with(base: Decision, action: Action, reason: str, ops: tuple[Op, ...]) -> Decision:
    return replace(
        base, action=action, reason=reason, transaction=Transaction(ops) if ops else None
    )
