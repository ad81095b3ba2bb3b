"""The planner (pure): registry nodes + local containers -> the decision for every node.

``run`` applies the transactions of these decisions, ``plan`` prints them: both come from here.
In replace mode a rewritten node takes the original's place; in mirror mode it is written
under the mirror root and the original stays.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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
from sidecar.ownership import Marker, Ownership, read_marker

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
# Parameters that, with the protocol, tell one exported service from another on one endpoint.
_SERVICE_KEY = ("interface", "group", "version")


class Action(StrEnum):
    REWRITE = "rewrite"  # write the advertised registration (replacing or mirroring the original)
    UPDATE = "update"  # re-point, or take over from an earlier run, a rewritten registration
    RESTORE = "restore"  # re-create a rewritten registration that vanished (e.g. session loss)
    REMOVE = "remove"  # a rewritten registration whose container or original is gone
    DROP_ORIGINAL = "drop-original"  # provider re-registered; its rewritten twin already exists
    KEEP = "keep"  # rewritten by this sidecar and still right
    LEAVE = "leave"  # not ours to change, with the reason
    FORGET = "forget"  # a remembered rewrite that is gone and should stay gone
    HOLD = "hold"  # a remembered rewrite whose container does not serve now: wait for it

    @property
    def writes(self) -> bool:
        return self not in (Action.KEEP, Action.LEAVE, Action.FORGET, Action.HOLD)


class Mode(StrEnum):
    REPLACE = "replace"
    MIRROR = "mirror"


@dataclass(frozen=True)
class Identity:
    """Who is planning: the sidecar's ZooKeeper session, its Docker engine, its advertised host.

    ``session`` is None for an observer (``plan``), which counts every node of its engine's
    sidecar as managed instead of taking it over.
    """

    session: int | None
    engine: str
    advertise_host: str
    mode: Mode = Mode.REPLACE


@dataclass(frozen=True)
class Scope:
    """What the planner sees of one ``providers`` path.

    ``remembered`` are this sidecar's rewritten nodes of the path as last seen, so that ones
    that vanished (its own session expired) can be re-created. In mirror mode ``mirror``
    holds the nodes of the matching path under the mirror root.
    """

    parent: str
    nodes: Sequence[RegistryNode]
    remembered: Sequence[RegistryNode] = ()
    mirror_parent: str | None = None
    mirror: Sequence[RegistryNode] = ()


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
    provisional: bool = False  # may turn out otherwise without any event: plan again later
    suspended: bool = False  # removed while its container does not serve; restored after

    @property
    def interface(self) -> str:
        return interface_of(self.node.parent)

    @property
    def rewritten_path(self) -> str | None:
        """The node this decision leaves in place as the sidecar's own, if any."""
        if self.action is Action.KEEP:
            return self.node.path if read_marker(self.node.data) else None
        creates = (
            [op for op in self.transaction.ops if isinstance(op, Create)]
            if self.transaction
            else []
        )
        return creates[0].path if creates else None


def interface_of(providers_path: str) -> str:
    """``/dubbo/com.x.Svc/providers`` -> ``com.x.Svc``."""
    return unquote(providers_path.rstrip("/").rsplit("/", 2)[-2])


def claims_in(nodes: Iterable[RegistryNode]) -> dict[Endpoint, set[int]]:
    """The sessions registering each endpoint: owners of original registrations, and the
    provider sessions recorded in rewritten nodes (their originals are gone)."""
    claims: dict[Endpoint, set[int]] = {}
    for node in nodes:
        marker = read_marker(node.data)
        if marker is not None:
            claims.setdefault(marker.container_endpoint, set()).add(marker.provider_session)
            continue
        try:
            endpoint = urls.parse(node.name).endpoint
        except urls.MalformedName:
            continue
        claims.setdefault(endpoint, set()).add(node.owner)
    return claims


def plan_providers(
    scope: Scope, containers: ContainerIndex, me: Identity, owners: Ownership
) -> list[Decision]:
    """Decide every node of one ``providers`` path; applying the result twice changes nothing."""
    planner = _Planner(scope, containers, me, owners)
    return planner.plan()


class _Planner:
    """One planning pass over one scope (kept as an object only to share its inputs)."""

    def __init__(
        self, scope: Scope, containers: ContainerIndex, me: Identity, owners: Ownership
    ) -> None:
        self.scope = scope
        self.containers = containers
        self.me = me
        self.owners = owners
        self.by_name = {node.name: node for node in scope.nodes}
        # Where rewritten nodes live: the same path (replace) or the mirror path.
        self.target_parent = scope.mirror_parent if me.mode is Mode.MIRROR else scope.parent
        self.targets: Mapping[str, RegistryNode] = (
            {n.name: n for n in scope.mirror} if me.mode is Mode.MIRROR else self.by_name
        )
        self.mirrored: set[str] = set()  # mirror names the originals call for

    def plan(self) -> list[Decision]:
        ours = [n for n in self.scope.nodes if read_marker(n.data) is not None]
        originals = [n for n in self.scope.nodes if read_marker(n.data) is None]
        decisions = [self._registration(node) for node in originals]
        if self.me.mode is Mode.MIRROR:
            return decisions + [self._mirrored(node) for node in self.scope.mirror]
        superseded = {
            op.path: d.node.name
            for d in decisions
            if d.action is Action.REWRITE and d.transaction
            for op in d.transaction.ops[1:]
            if isinstance(op, Delete)
        }
        for node in ours:
            if node.path in superseded:
                reason = f"superseded by the rewrite of {superseded[node.path][:80]}"
                decisions.append(Decision(Action.FORGET, node, reason))
            else:
                decisions.append(self._rewritten(node))
        present = {n.name for n in self.scope.nodes}
        decisions += [
            self._vanished(node) for node in self.scope.remembered if node.name not in present
        ]
        return decisions

    # -- original registrations --------------------------------------------------------------

    def _registration(self, node: RegistryNode) -> Decision:
        try:
            url = urls.parse(node.name)
        except urls.MalformedName as exc:
            return Decision(Action.LEAVE, node, f"malformed node name: {exc}")
        if url.protocol not in KNOWN_PROTOCOLS:
            return Decision(Action.LEAVE, node, f"unknown protocol {url.protocol!r}", url.endpoint)
        found = self.containers.resolve(url.endpoint, self.me.advertise_host)
        if isinstance(found, Unmapped):
            return Decision(
                Action.LEAVE,
                node,
                found.reason,
                url.endpoint,
                container=found.container,
                local=found.local,
            )
        base = Decision(Action.LEAVE, node, "", url.endpoint, found.advertised, found.container)
        target_name = url.with_endpoint(found.advertised)
        target = self.targets.get(target_name)
        refusal = self.owners.refusal(node, url.endpoint)
        if refusal is not None:
            left = _decide(base, Action.LEAVE, refusal)
            if target is not None and self._is_ours(target, node.name, found.container.id):
                # Proof is missing for now, not disproof: keep what was proven before.
                self.mirrored.add(target_name)
                left = _decide(base, Action.KEEP, f"mirror kept as it was: {refusal}")
            return replace(left, provisional=self.owners.unproven(node))
        marker = Marker(node.name, url.endpoint, found.container.id, self.me.engine, node.owner)
        create = Create(f"{self.target_parent}/{target_name}", marker.encode())
        if self.me.mode is Mode.MIRROR:
            self.mirrored.add(target_name)
            if target is None:
                return _decide(base, Action.REWRITE, _mirror_reason(found), create)
            if self._is_ours(target, node.name, found.container.id):
                return _decide(base, Action.KEEP, f"mirrored at {target.path}")
            return _decide(
                base, Action.LEAVE, "the mirrored name is already registered by another party"
            )
        if target is None:
            stale = {
                m.original
                for m in self._same_service_rewrites(url.endpoint, node.name)
                if self._stale(m, node.owner)
            }
            superseded = [
                Delete(n.path, n.version)
                for n in self.scope.nodes
                if (m := read_marker(n.data)) is not None and m.original in stale
            ]
            return _decide(
                base,
                Action.REWRITE,
                _published_reason(found),
                Delete(node.path, node.version),
                *superseded,
                create,
            )
        if self._is_ours(target, node.name, found.container.id):
            return _decide(
                base,
                Action.DROP_ORIGINAL,
                "provider registered its container address again; its rewrite is already there",
                Check(target.path, target.version),
                Delete(node.path, node.version),
            )
        return _decide(
            base, Action.LEAVE, "the rewritten name is already registered by another party"
        )

    def _same_service_rewrites(self, endpoint: Endpoint, original: str) -> list[Marker]:
        """Markers of our rewrites of other registrations of the same service on the same
        container endpoint, whose originals are gone."""
        key = _service_key(original)
        if key is None:
            return []
        return [
            marker
            for node in self.scope.nodes
            if (marker := read_marker(node.data)) is not None
            and marker.engine == self.me.engine
            and marker.container_endpoint == endpoint
            and marker.original != original
            and marker.original not in self.by_name
            and _service_key(marker.original) == key
        ]

    def _stale(self, earlier: Marker, later_session: int) -> bool:
        """An earlier registration is stale once the same session registered the service
        again (re-export), or once its own session is known to be gone (the provider
        restarted)."""
        return earlier.provider_session == later_session or self.owners.disconnected(
            earlier.provider_session
        )

    # -- the sidecar's own nodes -------------------------------------------------------------

    def _rewritten(self, node: RegistryNode) -> Decision:
        """Replace mode: a node carrying a marker, found in the providers path."""
        marker = read_marker(node.data)
        assert marker is not None
        if marker.engine != self.me.engine:
            return Decision(
                Action.LEAVE,
                node,
                f"rewritten by the sidecar of Docker engine {marker.engine[:12]}",
                marker.container_endpoint,
                local=False,
            )
        base, found = self._still_mapped(node, marker)
        if isinstance(found, Unmapped):
            removal = _decide(base, Action.REMOVE, found.reason, Delete(node.path, node.version))
            return replace(removal, suspended=found.suspended)
        later = self._same_service_rewrites(marker.container_endpoint, marker.original)
        if self.owners.disconnected(marker.provider_session) and any(
            self.owners.connected(m.provider_session) for m in later
        ):
            return _decide(
                base, Action.REMOVE, "its provider session is gone and a newer registration "
                "of the service is rewritten", Delete(node.path, node.version),
            )  # fmt: skip
        wanted = urls.parse(marker.original).with_endpoint(found.advertised)
        if wanted == node.name and self.me.session in (None, node.owner):
            return _decide(
                base, Action.KEEP, f"managed by this host's sidecar (session 0x{node.owner:x})"
            )
        if wanted != node.name and wanted in self.by_name:
            return _decide(
                base,
                Action.REMOVE,
                "duplicate of a registration already at the advertised address",
                Delete(node.path, node.version),
            )
        if marker.original in self.by_name and wanted != node.name:
            # The original is back and maps elsewhere now: its own decision rewrites it anew.
            return _decide(
                base,
                Action.REMOVE,
                "its original is registered again and is rewritten anew",
                Delete(node.path, node.version),
            )
        if wanted == node.name:
            reason = f"taking over from an earlier run (session 0x{node.owner:x})"
        else:
            reason = f"advertised address changed from {urls.parse(node.name).endpoint}"
        create = Create(f"{node.parent}/{wanted}", node.data)
        return _decide(base, Action.UPDATE, reason, Delete(node.path, node.version), create)

    def _vanished(self, node: RegistryNode) -> Decision:
        """Replace mode: a rewrite this sidecar made that is no longer in the registry."""
        marker = read_marker(node.data)
        assert marker is not None
        base, found = self._still_mapped(node, marker)
        if isinstance(found, Unmapped):
            if found.suspended:
                return _decide(base, Action.HOLD, f"{found.reason}; re-created once it serves")
            return _decide(base, Action.FORGET, found.reason)
        if marker.original in self.by_name:
            return _decide(base, Action.FORGET, "its original is registered again")
        later = self._same_service_rewrites(marker.container_endpoint, marker.original)
        if any(self._stale(marker, m.provider_session) for m in later):
            return _decide(base, Action.FORGET, "a newer registration of the service replaced it")
        wanted = urls.parse(marker.original).with_endpoint(found.advertised)
        if wanted in self.by_name:
            return _decide(base, Action.FORGET, "a registration at the advertised address exists")
        create = Create(f"{node.parent}/{wanted}", node.data)
        return _decide(base, Action.RESTORE, "its container still serves; re-creating it", create)

    def _mirrored(self, node: RegistryNode) -> Decision:
        """Mirror mode: a node under the mirror path."""
        marker = read_marker(node.data)
        if marker is None or marker.engine != self.me.engine:
            return Decision(Action.LEAVE, node, "not mirrored by this host's sidecar", local=False)
        base = Decision(Action.KEEP, node, "", marker.container_endpoint)
        if node.name not in self.mirrored:
            reason = (
                "its original registration is gone"
                if marker.original not in self.by_name
                else "its original no longer maps here"
            )
            return _decide(base, Action.REMOVE, reason, Delete(node.path, node.version))
        if self.me.session in (None, node.owner):
            return _decide(
                base,
                Action.KEEP,
                f"mirror managed by this host's sidecar (session 0x{node.owner:x})",
            )
        return _decide(
            base,
            Action.UPDATE,
            f"taking over from an earlier run (session 0x{node.owner:x})",
            Delete(node.path, node.version),
            Create(node.path, node.data),
        )

    def _still_mapped(
        self, node: RegistryNode, marker: Marker
    ) -> tuple[Decision, Mapped | Unmapped]:
        """The decision skeleton for one of our nodes, and its mapping or why it has none."""
        gone = Container(marker.container, marker.container[:12], network_mode="")
        base = Decision(Action.KEEP, node, "", marker.container_endpoint, container=gone)
        try:
            original = urls.parse(marker.original)
        except urls.MalformedName:
            return base, Unmapped("its marker names an unreadable original")
        found = self.containers.resolve(original.endpoint, self.me.advertise_host)
        if isinstance(found, Mapped):
            if found.container.id != marker.container:
                return base, Unmapped(f"address now belongs to container {found.container.name}")
            return replace(base, advertised=found.advertised, container=found.container), found
        if marker.container not in self.containers.by_id:
            return base, Unmapped(f"container {marker.container[:12]} is no longer running")
        return replace(base, container=found.container or gone), found

    def _is_ours(self, node: RegistryNode, original: str, container: str) -> bool:
        """Whether ``node`` is this engine's rewrite of ``original`` served by ``container``."""
        marker = read_marker(node.data)
        return (
            marker is not None
            and marker.engine == self.me.engine
            and marker.original == original
            and marker.container == container
        )


def _service_key(name: str) -> tuple[str, ...] | None:
    try:
        url = urls.parse(name)
    except urls.MalformedName:
        return None
    parameters = dict(url.parameters)
    return (url.protocol, url.path, *(parameters.get(k, "") for k in _SERVICE_KEY))


def _published_reason(found: Mapped) -> str:
    binding = found.binding
    source = "advertise host" if binding.any_host_address else f"binding host IP {binding.host_ip}"
    return (
        f"container {found.container.name} publishes {binding.container_port}/tcp "
        f"on host port {binding.host_port} ({source})"
    )


def _mirror_reason(found: Mapped) -> str:
    return f"mirrored: {_published_reason(found)}"


def _decide(base: Decision, action: Action, reason: str, *ops: Op) -> Decision:
    return replace(
        base, action=action, reason=reason, transaction=Transaction(ops) if ops else None
    )
