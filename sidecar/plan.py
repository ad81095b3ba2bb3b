"""The planner (pure): registry nodes + local containers -> the decision for every node.

``run`` applies the transactions of these decisions, ``plan`` prints them: both come from here.
In replace mode a rewritten node takes the original's place; in mirror mode it is written
under the mirror root and the original stays. A scope is either an interface's ``providers``
path (URL node names) or an application's instance path (Curator JSON).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from urllib.parse import unquote

from sidecar import instances, labels, urls
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
from sidecar.scope import DeploymentScope, Lease

# Protocols whose provider URLs carry a TCP endpoint that consumers dial.
KNOWN_PROTOCOLS = frozenset(
    {"dubbo", "tri", "triple", "rest", "grpc", "hessian", "http", "https", "rmi", "webservice",
     "thrift"}
)  # fmt: skip
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
    """Who is planning: the sidecar's ZooKeeper session, its Docker engine, its advertised host
    (and where that came from), its default mode and its deployment scope.

    ``session`` is None for an observer (``plan``), which counts every node of its engine's
    sidecar as managed instead of taking it over.
    """

    session: int | None
    engine: str
    advertise_host: str
    mode: Mode = Mode.REPLACE
    scope: DeploymentScope = field(default_factory=DeploymentScope)
    advertise_source: str = "--advertise-host"


@dataclass(frozen=True)
class Remembered:
    """A node this sidecar wrote, as it wrote it, with what it knows about it."""

    node: RegistryNode
    marker: Marker


@dataclass(frozen=True)
class Scope:
    """What the planner sees of one path.

    ``remembered`` are this sidecar's rewritten nodes of the path as last written, so that
    ones that vanished (its own session expired) can be re-created, and instance nodes (whose
    data is the application's) can be told apart. In mirror mode ``mirror`` holds the nodes
    of the matching path under the mirror root.
    """

    parent: str
    nodes: Sequence[RegistryNode]
    remembered: Sequence[Remembered] = ()
    mirror_parent: str | None = None
    mirror: Sequence[RegistryNode] = ()
    instances: bool = False


@dataclass(frozen=True, eq=False)
class Decision:
    """What happens to one registry node, why, and the transaction that does it.

    Compared and hashed by identity: a pass keys each decision's outcome by the decision.
    """

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
    marker: Marker | None = None  # what the node it creates or keeps is a rewrite of
    refused: bool = False  # left alone because its session is not provably this host's
    decided_by: str = ""  # the scope, labels and address source behind the decision

    @property
    def interface(self) -> str:
        return interface_of(self.node.parent)

    @property
    def rewritten_path(self) -> str | None:
        """The node this decision leaves in place as the sidecar's own, if any."""
        if self.action is Action.KEEP:
            return (
                self.node.path if self.marker and self.marker.original != self.node.name else None
            )
        creates = (
            [op for op in self.transaction.ops if isinstance(op, Create)]
            if self.transaction
            else []
        )
        return creates[0].path if creates else None


def interface_of(path: str) -> str:
    """``/dubbo/com.x.Svc/providers`` -> ``com.x.Svc``; ``/services/shop`` -> ``shop``."""
    segments = path.rstrip("/").rsplit("/", 2)
    return unquote(segments[-2] if segments[-1] == "providers" else segments[-1])


def claims_in(scope: Scope) -> dict[Endpoint, set[int]]:
    """The sessions registering each endpoint: owners of original registrations, and the
    provider sessions recorded for rewritten nodes (their originals are gone)."""
    kind = _kind(scope)
    claims: dict[Endpoint, set[int]] = {}
    for node in scope.nodes:
        marker = kind.marker_of(node)
        if marker is not None:
            claims.setdefault(marker.container_endpoint, set()).add(marker.provider_session)
            continue
        parsed = kind.parse(node.name, node.data)
        if isinstance(parsed, _Parsed):
            claims.setdefault(parsed.endpoint, set()).add(node.owner)
    return claims


def plan_providers(
    scope: Scope, containers: ContainerIndex, me: Identity, owners: Ownership
) -> list[Decision]:
    """Decide every node of one scope; applying the result twice changes nothing."""
    return _Planner(scope, containers, me, owners).plan()


# -- what differs between URL nodes and instance nodes ----------------------------------------


@dataclass(frozen=True)
class _Parsed:
    endpoint: Endpoint
    url: urls.ProviderUrl | None = None
    instance: instances.Instance | None = None

    @property
    def service(self) -> tuple[str, ...] | None:
        """What a newer registration of the same service shares (None: nothing, instances).
        Computed only when asked: it decodes the whole name."""
        if self.url is None:
            return None
        parameters = dict(self.url.parameters)
        return (self.url.protocol, self.url.path, *(parameters.get(k, "") for k in _SERVICE_KEY))


class _UrlKind:
    """Provider URL nodes: the name carries everything, the data is the sidecar's marker."""

    def parse(self, name: str, data: bytes) -> _Parsed | str:
        try:
            url = urls.parse(name)
        except urls.MalformedName as exc:
            return f"malformed node name: {exc}"
        if url.protocol not in KNOWN_PROTOCOLS:
            return f"unknown protocol {url.protocol!r}"
        return _Parsed(url.endpoint, url=url)

    def marker_of(self, node: RegistryNode) -> Marker | None:
        return read_marker(node.data)

    def target(
        self, parsed: _Parsed, found: Mapped, containers: ContainerIndex, advertise_host: str
    ) -> tuple[str, bytes | None, str]:
        assert parsed.url is not None
        return parsed.url.with_endpoint(found.advertised), None, ""

    def data(self, marker: Marker, content: bytes | None) -> bytes:
        return marker.encode()

    def same(self, existing: bytes, wanted: bytes) -> bool:
        """Consumers read only the name: the data (the marker) never needs rewriting."""
        return True


class _InstanceKind:
    """Instance nodes: name and data both carry the address; markers are remembered only."""

    def __init__(self, remembered: Iterable[Remembered]) -> None:
        self._remembered = {r.node.name: r for r in remembered}

    def parse(self, name: str, data: bytes) -> _Parsed | str:
        try:
            instance = instances.parse(name, data)
        except instances.MalformedInstance as exc:
            return f"not an instance this sidecar understands: {exc}"
        return _Parsed(instance.endpoint, instance=instance)

    def marker_of(self, node: RegistryNode) -> Marker | None:
        remembered = self._remembered.get(node.name)
        if remembered is not None and remembered.node.data == node.data:
            return remembered.marker
        return None

    def target(
        self, parsed: _Parsed, found: Mapped, containers: ContainerIndex, advertise_host: str
    ) -> tuple[str, bytes | None, str]:
        assert parsed.instance is not None
        container = found.container

        def host_port(port: int) -> int | None:
            return containers.external_port(container, port, advertise_host)

        name, data, unmapped = instances.rewrite(parsed.instance, found.advertised, host_port)
        notes = []
        if unmapped:
            notes.append(
                f"ports {', '.join(map(str, unmapped))} are not published: left as they are"
            )
        if found.advertised.port != parsed.endpoint.port:
            notes.append(
                f"Dubbo 3.1+ consumers may take the port from the provider's metadata "
                f"({parsed.endpoint.port}), not {found.advertised.port}: publish the same port "
                f"number on the host (-p {parsed.endpoint.port}:{parsed.endpoint.port}), or "
                "register interface-level only (register-mode=interface), or set "
                "FORCE_INTERFACE on consumers"
            )
        return name, data, "; ".join(notes)

    def data(self, marker: Marker, content: bytes | None) -> bytes:
        assert content is not None
        return content

    def same(self, existing: bytes, wanted: bytes) -> bool:
        return existing == wanted


def _kind(scope: Scope) -> _UrlKind | _InstanceKind:
    return _InstanceKind(scope.remembered) if scope.instances else _UrlKind()


# -- the planner ------------------------------------------------------------------------------


class _Planner:
    """One planning pass over one scope (kept as an object only to share its inputs)."""

    def __init__(
        self, scope: Scope, containers: ContainerIndex, me: Identity, owners: Ownership
    ) -> None:
        self.scope = scope
        self.containers = containers
        self.me = me
        self.owners = owners
        self.kind = _kind(scope)
        self.by_name = {node.name: node for node in scope.nodes}
        self.mirror_by_name = {node.name: node for node in scope.mirror}
        self.mirrored: set[str] = set()  # mirror names the originals call for
        self.markers = {n.name: self.kind.marker_of(n) for n in scope.nodes}
        # Our rewrites whose originals are gone, by container endpoint (see
        # _same_service_rewrites).
        self.rewrites_at: dict[Endpoint, list[tuple[RegistryNode, Marker]]] = {}
        for node in scope.nodes:
            marker = self.markers[node.name]
            if marker is not None and marker.original not in self.by_name:
                self.rewrites_at.setdefault(marker.container_endpoint, []).append((node, marker))

    def plan(self) -> list[Decision]:
        ours = [n for n in self.scope.nodes if self.markers[n.name] is not None]
        originals = [n for n in self.scope.nodes if self.markers[n.name] is None]
        decisions = [self._registration(node) for node in originals]
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
            self._vanished(r) for r in self.scope.remembered if r.node.name not in present
        ]
        return decisions + [self._mirrored(node) for node in self.scope.mirror]

    def _targets(self, mode: Mode) -> tuple[str | None, Mapping[str, RegistryNode]]:
        """Where rewritten nodes of this mode live: the same path, or the mirror path."""
        if mode is Mode.MIRROR:
            return self.scope.mirror_parent, self.mirror_by_name
        return self.scope.parent, self.by_name

    def _decided_by(self, found: Mapped | Unmapped) -> str:
        parts = [self.me.scope.describe()]
        if isinstance(found, Mapped):
            if labels.ADVERTISE_HOST not in found.by_label:
                binding = found.binding
                parts.append(
                    f"address from {self.me.advertise_source}"
                    if binding.any_host_address
                    else f"binding on {binding.host_ip}"
                )
            parts += [f"label {name}" for name in found.by_label]
            if found.mode:
                parts.append(f"label {labels.MODE}={found.mode}")
        elif found.opted_out:
            parts.append("labels")
        return ", ".join(parts)

    def _excluded(self, container: Container | None) -> str | None:
        """Why a container is another sidecar's, or outside this one's scope (None: ours)."""
        return self.me.scope.excludes(container.id) if container is not None else None

    def _live_peer(self, node: RegistryNode) -> Lease | None:
        """The engine's other live sidecar that owns ``node``, if any."""
        if node.owner in (0, self.me.session):
            return None
        return self.me.scope.holder(node.owner)

    # -- original registrations --------------------------------------------------------------

    def _registration(self, node: RegistryNode) -> Decision:
        parsed = self.kind.parse(node.name, node.data)
        if isinstance(parsed, str):
            return Decision(Action.LEAVE, node, parsed)
        found = self.containers.resolve(parsed.endpoint, self.me.advertise_host)
        excluded = self._excluded(found.container)
        if excluded is not None:
            return Decision(
                Action.LEAVE, node, excluded, parsed.endpoint, container=found.container,
                local=not self.me.scope.app, decided_by=self.me.scope.describe(),
            )  # fmt: skip
        if isinstance(found, Unmapped):
            return Decision(
                Action.LEAVE, node, found.reason, parsed.endpoint, container=found.container,
                local=found.local, decided_by=self._decided_by(found) if found.local else "",
            )  # fmt: skip
        base = Decision(Action.LEAVE, node, "", parsed.endpoint, found.advertised, found.container,
                        decided_by=self._decided_by(found))  # fmt: skip
        mode = Mode(found.mode) if found.mode else self.me.mode
        target_parent, targets = self._targets(mode)
        if target_parent is None:
            return _decide(
                base, Action.LEAVE, f"label {labels.MODE}=mirror: no mirror root for this path "
                "(mirror mode needs exactly one --root and one --services-root)",
            )  # fmt: skip
        target_name, content, notes = self.kind.target(
            parsed, found, self.containers, self.me.advertise_host
        )
        marker = Marker(
            node.name, parsed.endpoint, found.container.id, self.me.engine, node.owner,
            original_data=node.data if self.scope.instances else b"",
        )  # fmt: skip
        data = self.kind.data(marker, content)
        base = replace(base, marker=marker)
        target = targets.get(target_name)
        ours = target is not None and self._is_ours(target, node.name, found.container.id, mode)
        refusal = self.owners.refusal(node, parsed.endpoint, found.container.addresses)
        if refusal is not None:
            left = replace(_decide(base, Action.LEAVE, refusal), refused=True)
            if ours and mode is Mode.MIRROR:
                # Proof is missing for now, not disproof: keep what was proven before.
                self.mirrored.add(target_name)
                left = _decide(base, Action.KEEP, f"mirror kept as it was: {refusal}")
            return replace(left, provisional=self.owners.unproven(node))
        create = Create(f"{target_parent}/{target_name}", data)
        reason = _published_reason(found) + (f"; {notes}" if notes else "")
        if mode is Mode.MIRROR:
            self.mirrored.add(target_name)
            if target is None:
                return _decide(base, Action.REWRITE, f"mirrored: {reason}", create)
            if ours and self.kind.same(target.data, data):
                return _decide(base, Action.KEEP, f"mirrored at {target.path}")
            if ours:
                return _decide(
                    base, Action.UPDATE, f"mirror follows its original: {reason}",
                    Delete(target.path, target.version), create,
                )  # fmt: skip
            return _decide(
                base, Action.LEAVE, "the mirrored name is already registered by another party"
            )
        if target is None:
            stale = [
                Delete(n.path, n.version)
                for n, m in self._same_service_rewrites(parsed, node.name)
                if self._stale(m, node.owner)
            ]
            return _decide(
                base, Action.REWRITE, reason, Delete(node.path, node.version), *stale, create
            )
        if ours and self.kind.same(target.data, data):
            return _decide(
                base,
                Action.DROP_ORIGINAL,
                "provider registered its container address again; its rewrite is already there",
                Check(target.path, target.version),
                Delete(node.path, node.version),
            )
        if ours:
            return _decide(
                base, Action.REWRITE, f"provider registered again with new data; {reason}",
                Delete(node.path, node.version), Delete(target.path, target.version), create,
            )  # fmt: skip
        return _decide(
            base, Action.LEAVE, "the rewritten name is already registered by another party"
        )

    def _same_service_rewrites(
        self, parsed: _Parsed, original: str
    ) -> list[tuple[RegistryNode, Marker]]:
        """Our rewrites of other registrations of the same service on the same container
        endpoint whose originals are gone."""
        candidates = self.rewrites_at.get(parsed.endpoint, ())
        if not candidates or parsed.service is None:
            return []
        found = []
        for node, marker in candidates:
            if marker.engine != self.me.engine or marker.original == original:
                continue
            earlier = self.kind.parse(marker.original, marker.original_data)
            if isinstance(earlier, _Parsed) and earlier.service == parsed.service:
                found.append((node, marker))
        return found

    def _stale(self, earlier: Marker, later_session: int) -> bool:
        """An earlier registration is stale once the same session registered the service
        again (re-export), or once its own session is known to be gone (the provider
        restarted)."""
        return earlier.provider_session == later_session or self.owners.disconnected(
            earlier.provider_session
        )

    # -- the sidecar's own nodes -------------------------------------------------------------

    def _rewritten(self, node: RegistryNode) -> Decision:
        """Replace mode: a node this sidecar (or another host's) wrote, found in the path."""
        marker = self.kind.marker_of(node)
        assert marker is not None
        if marker.engine != self.me.engine:
            return Decision(
                Action.LEAVE, node, f"rewritten by the sidecar of {marker.engine}",
                marker.container_endpoint, local=False,
            )  # fmt: skip
        elsewhere = self._elsewhere(node, marker)
        if elsewhere is not None:
            return elsewhere
        base, found = self._still_mapped(node, marker)
        if isinstance(found, Unmapped) and found.opted_out:
            if marker.original in self.by_name:
                return _decide(
                    base, Action.REMOVE, f"{found.reason}; its original is registered again",
                    Delete(node.path, node.version),
                )  # fmt: skip
            # Removing it would unregister the provider: its original went with the swap.
            reason = (
                f"{found.reason}; the rewrite stays until its container stops (the original "
                "cannot be handed back to the provider's session)"
            )
            if self.me.session in (None, node.owner):
                return _decide(base, Action.KEEP, reason)
            return _decide(
                base, Action.UPDATE, f"taking over from an earlier run: {reason}",
                Delete(node.path, node.version), Create(node.path, node.data),
            )  # fmt: skip
        if isinstance(found, Unmapped):
            removal = _decide(base, Action.REMOVE, found.reason, Delete(node.path, node.version))
            return replace(removal, suspended=found.suspended)
        parsed = self.kind.parse(marker.original, marker.original_data)
        if isinstance(parsed, str):
            return _decide(base, Action.LEAVE, f"its original is unreadable now: {parsed}")
        later = self._same_service_rewrites(parsed, marker.original)
        if self.owners.disconnected(marker.provider_session) and any(
            self.owners.connected(m.provider_session) for _, m in later
        ):
            return _decide(
                base, Action.REMOVE, "its provider session is gone and a newer registration "
                "of the service is rewritten", Delete(node.path, node.version),
            )  # fmt: skip
        wanted, content, _ = self.kind.target(
            parsed, found, self.containers, self.me.advertise_host
        )
        data = self.kind.data(marker, content)
        if (
            wanted == node.name
            and self.kind.same(node.data, data)
            and self.me.session in (None, node.owner)
        ):
            return _decide(
                base, Action.KEEP, f"managed by this host's sidecar (session 0x{node.owner:x})"
            )
        if wanted != node.name and wanted in self.by_name:
            return _decide(
                base, Action.REMOVE, "duplicate of a registration at the advertised address",
                Delete(node.path, node.version),
            )  # fmt: skip
        if marker.original in self.by_name and wanted != node.name:
            # The original is back and maps elsewhere now: its own decision rewrites it anew.
            return _decide(
                base, Action.REMOVE, "its original is registered again and is rewritten anew",
                Delete(node.path, node.version),
            )  # fmt: skip
        if wanted != node.name:
            reason = f"advertised address changed from {self._endpoint_of(node)}"
        elif not self.kind.same(node.data, data):
            reason = "a published port changed"
        else:
            reason = self._taking_over(node)
        create = Create(f"{node.parent}/{wanted}", data)
        return _decide(base, Action.UPDATE, reason, Delete(node.path, node.version), create)

    def _vanished(self, remembered: Remembered) -> Decision:
        """Replace mode: a rewrite this sidecar made that is no longer in the registry."""
        node, marker = remembered.node, remembered.marker
        excluded = self.me.scope.excludes(marker.container)
        if excluded is not None:
            return Decision(Action.FORGET, node, excluded, marker.container_endpoint)
        base, found = self._still_mapped(node, marker)
        if isinstance(found, Unmapped):
            if found.suspended:
                return _decide(base, Action.HOLD, f"{found.reason}; re-created once it serves")
            return _decide(base, Action.FORGET, found.reason)
        if marker.original in self.by_name:
            return _decide(base, Action.FORGET, "its original is registered again")
        parsed = self.kind.parse(marker.original, marker.original_data)
        if isinstance(parsed, str):
            return _decide(base, Action.FORGET, f"its original is unreadable now: {parsed}")
        later = self._same_service_rewrites(parsed, marker.original)
        if any(self._stale(marker, m.provider_session) for _, m in later):
            return _decide(base, Action.FORGET, "a newer registration of the service replaced it")
        wanted, content, _ = self.kind.target(
            parsed, found, self.containers, self.me.advertise_host
        )
        if wanted in self.by_name:
            return _decide(base, Action.FORGET, "a registration at the advertised address exists")
        create = Create(f"{node.parent}/{wanted}", self.kind.data(marker, content))
        return _decide(base, Action.RESTORE, "its container still serves; re-creating it", create)

    def _mirrored(self, node: RegistryNode) -> Decision:
        """Mirror mode: a node under the mirror path."""
        marker = read_marker(node.data) if not self.scope.instances else self._mirror_marker(node)
        if marker is None or marker.engine != self.me.engine:
            return Decision(Action.LEAVE, node, "not mirrored by this host's sidecar", local=False)
        elsewhere = self._elsewhere(node, marker)
        if elsewhere is not None:
            return elsewhere
        base = Decision(Action.KEEP, node, "", marker.container_endpoint, marker=marker)
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
            base, Action.UPDATE, self._taking_over(node),
            Delete(node.path, node.version), Create(node.path, node.data),
        )  # fmt: skip

    def _mirror_marker(self, node: RegistryNode) -> Marker | None:
        """Instance mirrors carry no marker: one owned by a session of this sidecar that an
        original still calls for, or that is remembered, is ours."""
        remembered = self.kind.marker_of(node)
        if remembered is not None:
            return remembered
        if node.owner == self.me.session:
            return Marker(node.name, Endpoint("0.0.0.0", 1), "", self.me.engine)
        return None

    def _taking_over(self, node: RegistryNode) -> str:
        peer = self._live_peer(node)
        if peer is not None:
            return f"taking over from {peer.describe()}"
        return f"taking over from an earlier run (session 0x{node.owner:x})"

    def _elsewhere(self, node: RegistryNode, marker: Marker) -> Decision | None:
        """Leave alone a node of this engine that another of its sidecars manages."""
        excluded = self.me.scope.excludes(marker.container) if marker.container else None
        peer = self._live_peer(node)
        if excluded is None and peer is not None and not self.me.scope.may_take_from(peer):
            excluded = f"managed by {peer.describe()}"
        if excluded is None:
            return None
        return Decision(
            Action.LEAVE, node, excluded, marker.container_endpoint,
            local=not self.me.scope.app, decided_by=self.me.scope.describe(),
        )  # fmt: skip

    def _still_mapped(
        self, node: RegistryNode, marker: Marker
    ) -> tuple[Decision, Mapped | Unmapped]:
        """The decision skeleton for one of our nodes, and its mapping or why it has none."""
        gone = Container(marker.container, marker.container[:12], network_mode="")
        base = Decision(Action.KEEP, node, "", marker.container_endpoint, container=gone,
                        marker=marker)  # fmt: skip
        found = self.containers.resolve(marker.container_endpoint, self.me.advertise_host)
        if isinstance(found, Mapped):
            if found.container.id != marker.container:
                return base, Unmapped(f"address now belongs to container {found.container.name}")
            decided = self._decided_by(found)
            return replace(base, advertised=found.advertised, container=found.container,
                           decided_by=decided), found  # fmt: skip
        if marker.container not in self.containers.by_id:
            return base, Unmapped(f"container {marker.container[:12]} is no longer running")
        return replace(base, container=found.container or gone), found

    def _is_ours(self, node: RegistryNode, original: str, container: str, mode: Mode) -> bool:
        """Whether ``node`` is this engine's rewrite of ``original`` served by ``container``."""
        marker = (
            self._mirror_marker(node)
            if self.scope.instances and mode is Mode.MIRROR
            else self.kind.marker_of(node)
        )
        return (
            marker is not None
            and marker.engine == self.me.engine
            and marker.original in (original, node.name)
            and marker.container in (container, "")
        )

    def _endpoint_of(self, node: RegistryNode) -> str:
        parsed = self.kind.parse(node.name, node.data)
        return str(parsed.endpoint) if isinstance(parsed, _Parsed) else node.name


def _published_reason(found: Mapped) -> str:
    binding = found.binding
    source = "advertise host" if binding.any_host_address else f"binding host IP {binding.host_ip}"
    return (
        f"container {found.container.name} publishes {binding.container_port}/tcp "
        f"on host port {binding.host_port} ({source})"
    )


def _decide(base: Decision, action: Action, reason: str, *ops: Op) -> Decision:
    return replace(
        base, action=action, reason=reason, transaction=Transaction(ops) if ops else None
    )
