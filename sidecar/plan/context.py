"""What one planning pass over one path knows, and the questions both kinds of decisions ask
(is this node ours, a live peer's, still mapped, superseded by a newer registration?)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from functools import cached_property

from sidecar import labels
from sidecar.mapping import ContainerIndex, Mapped, Unmapped
from sidecar.model import Container, Create, Delete, Endpoint, RegistryNode
from sidecar.ownership import Marker, Ownership
from sidecar.plan import persistent
from sidecar.plan.decisions import Action, Decision, Identity, Mode, PathView, decide
from sidecar.plan.kinds import kind_of
from sidecar.plan.parsing import Parsed
from sidecar.scope import Lease


class PlanContext:
    """One planning pass over one path: its inputs and what they imply."""

    def __init__(
        self, view: PathView, containers: ContainerIndex, me: Identity, owners: Ownership
    ) -> None:
        self.view = view
        self.containers = containers
        self.me = me
        self.owners = owners
        self.kind = kind_of(view)
        self.by_name = {node.name: node for node in view.nodes}
        self.mirror_by_name = {node.name: node for node in view.mirror}
        self.mirrored: set[str] = set()  # mirror names the originals call for
        self.markers = {n.name: self.kind.marker_of(n) for n in view.nodes}
        # Our rewrites whose originals are gone, by container endpoint (see
        # same_service_rewrites).
        self.rewrites_at: dict[Endpoint, list[tuple[RegistryNode, Marker]]] = {}
        for node in view.nodes:
            marker = self.markers[node.name]
            if marker is not None and marker.original not in self.by_name:
                self.rewrites_at.setdefault(marker.container_endpoint, []).append((node, marker))

    def targets(self, mode: Mode) -> tuple[str | None, Mapping[str, RegistryNode]]:
        """Where rewritten nodes of this mode live: the same path, or the mirror path."""
        if mode is Mode.MIRROR:
            return self.view.mirror_parent, self.mirror_by_name
        return self.view.parent, self.by_name

    def decided_by(self, found: Mapped | Unmapped, node: RegistryNode | None = None) -> str:
        """The scope, address source and labels behind a decision about ``node`` (for a
        persistent node, the label that claims it too)."""
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
            if node is not None and node.owner == 0 and persistent.claimed_application(found):
                parts.append(f"label {labels.PERSISTENT_APPLICATION}")
        elif found.opted_out:
            parts.append("labels")
        return ", ".join(parts)

    def refusal(self, node: RegistryNode, parsed: Parsed, found: Mapped) -> str | None:
        """Why ``node`` must not be rewritten for ``found.container`` (None: it may): its
        session must be provably this host's; a persistent node must be claimed by label."""
        if node.owner == 0:
            return persistent.refusal(parsed, found, self._persistent_claims)
        return self.owners.refusal(node, parsed.endpoint, found.container.addresses)

    @cached_property
    def _persistent_claims(self) -> Counter[persistent.Claim]:
        # Only computed for a path holding a persistent registration of a local container.
        return persistent.claims(self.view.nodes, self.kind, self.markers)

    def excluded(self, container: Container | None) -> str | None:
        """Why a container is another sidecar's, or outside this one's scope (None: ours)."""
        return self.me.scope.excludes(container.id) if container is not None else None

    def live_peer(self, node: RegistryNode) -> Lease | None:
        """The engine's other live sidecar that owns ``node``, if any."""
        if node.owner in (0, self.me.session):
            return None
        return self.me.scope.holder(node.owner)

    def same_service_rewrites(
        self, parsed: Parsed, original: str
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
            if isinstance(earlier, Parsed) and earlier.service == parsed.service:
                found.append((node, marker))
        return found

    def stale(self, earlier: Marker, later_session: int) -> bool:
        """An earlier registration is stale once the same session registered the service
        again (re-export), or once its own session is known to be gone (the provider
        restarted)."""
        return earlier.provider_session == later_session or self.owners.disconnected(
            earlier.provider_session
        )

    def holds(self, node: RegistryNode) -> bool:
        """Whether this sidecar's ``node`` needs no taking over: it is in this session (an
        observer counts every session as its own), or persistent (in none)."""
        return self.me.session in (None, node.owner) or node.owner == 0

    def kept(self, base: Decision, reason: str) -> Decision:
        """The sidecar's own node kept as it is: left alone in this session, else taken over
        from an earlier run (created again in this session)."""
        node = base.node
        if self.holds(node):
            return decide(base, Action.KEEP, reason)
        return decide(
            base, Action.UPDATE, f"taking over from an earlier run: {reason}",
            Delete(node.path, node.version), Create(node.path, node.data),
        )  # fmt: skip

    def managed(self, node: RegistryNode) -> str:
        if node.owner == 0:
            return "managed by this host's sidecar (persistent, as its original was)"
        return f"managed by this host's sidecar (session 0x{node.owner:x})"

    def taking_over(self, node: RegistryNode) -> str:
        peer = self.live_peer(node)
        if peer is not None:
            return f"taking over from {peer.describe()}"
        return f"taking over from an earlier run (session 0x{node.owner:x})"

    def elsewhere(self, node: RegistryNode, marker: Marker) -> Decision | None:
        """Leave alone a node of this engine that another of its sidecars manages."""
        excluded = self.me.scope.excludes(marker.container) if marker.container else None
        peer = self.live_peer(node)
        if excluded is None and peer is not None and not self.me.scope.may_take_from(peer):
            excluded = f"managed by {peer.describe()}"
        if excluded is None:
            return None
        return Decision(
            Action.LEAVE, node, excluded, marker.container_endpoint,
            local=not self.me.scope.app, decided_by=self.me.scope.describe(),
        )  # fmt: skip

    def still_mapped(
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
            decided = self.decided_by(found, node)
            return replace(base, advertised=found.advertised, container=found.container,
                           decided_by=decided), found  # fmt: skip
        if marker.container not in self.containers.by_id:
            return base, Unmapped(f"container {marker.container[:12]} is no longer running")
        return replace(base, container=found.container or gone), found

    def is_ours(self, node: RegistryNode, original: str, container: str, mode: Mode) -> bool:
        """Whether ``node`` is this engine's rewrite of ``original`` served by ``container``."""
        marker = (
            self.mirror_marker(node)
            if self.view.instances and mode is Mode.MIRROR
            else self.kind.marker_of(node)
        )
        return (
            marker is not None
            and marker.engine == self.me.engine
            and marker.original in (original, node.name)
            and marker.container in (container, "")
        )

    def mirror_marker(self, node: RegistryNode) -> Marker | None:
        """Instance mirrors carry no marker: one owned by a session of this sidecar that an
        original still calls for, or that is remembered, is ours."""
        remembered = self.kind.marker_of(node)
        if remembered is not None:
            return remembered
        if node.owner == self.me.session:
            return Marker(node.name, Endpoint("0.0.0.0", 1), "", self.me.engine)
        return None

    def endpoint_of(self, node: RegistryNode) -> str:
        parsed = self.kind.parse(node.name, node.data)
        return str(parsed.endpoint) if isinstance(parsed, Parsed) else node.name
