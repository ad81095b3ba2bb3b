"""Application-level instances in replace mode: rewritten in place, so that each node stays
its provider's.

Consumers read an instance's JSON, not its node's name. So instead of swapping the node for
one of the sidecar's own (what interface-level URLs need: their name is their address), the
sidecar changes only the data, with a version-checked setData of the provider's own node. The
node keeps its name (the container endpoint) and its owner, the provider's session: its
liveness, graceful unregistration and session expiry work as ZooKeeper made them, and the
provider's own updates (Curator's ``updateService``, a setData of its own path) and
re-registrations succeed. Each is rewritten again.

A node rewritten in place is recognised without adding anything to the application's JSON:
its name registers a local container endpoint, its data names another endpoint, and that
data is exactly what rewriting the instance for that endpoint gives (``restored``: the
rewrite undone for the container's port bindings, then done again, gives the same bytes).
It is kept while its data is the rewrite for today's mapping, rewritten again when the
advertised address moves, and left to its provider when its container stops, except a
persistent one, which no session would remove: it goes with its container.

The sidecar's own instance nodes (renamed by an earlier version, or migrated into its
session) are decided in legacy_instances.py; a container labelled for mirror mode is mirrored as any
registration is (rewrite.py).
"""

from __future__ import annotations

from dataclasses import replace

from sidecar import instances
from sidecar.mapping import Mapped, Unmapped
from sidecar.model import Delete, Endpoint, RegistryNode, SetData
from sidecar.ownership import Marker
from sidecar.plan import legacy_instances
from sidecar.plan.context import PlanContext
from sidecar.plan.decisions import Action, Decision, Mode, decide, published_reason
from sidecar.plan.existing_rewrites import plan_mirrored
from sidecar.plan.parsing import Parsed
from sidecar.plan.rewrite import plan_original


def plan_instances(ctx: PlanContext) -> list[Decision]:
    """Decide every node of an instance path, the rewrites remembered but gone from it, and
    its mirrors."""
    decisions: list[Decision] = []
    renamed: list[tuple[RegistryNode, Marker]] = []
    for node in ctx.view.nodes:
        marker = ctx.markers[node.name]
        if marker is None:
            decisions.append(_plan_node(ctx, node))
        elif marker.original != node.name:
            renamed.append((node, marker))
        else:
            decisions.append(legacy_instances.plan_migrated(ctx, node, marker))
    by_name = {d.node.name: d for d in decisions}
    decisions += [
        legacy_instances.plan_renamed(ctx, n, m, by_name.get(m.original)) for n, m in renamed
    ]
    present = {n.name for n in ctx.view.nodes}
    decisions += [
        legacy_instances.plan_gone(ctx, r)
        for r in ctx.view.remembered
        if r.node.name not in present
    ]
    return decisions + [plan_mirrored(ctx, node) for node in ctx.view.mirror]


def _plan_node(ctx: PlanContext, node: RegistryNode) -> Decision:
    """An instance node this sidecar does not remember writing."""
    original = instances.endpoint_of(node.name)
    try:
        instance = instances.parse_data(node.name, node.data)
    except instances.MalformedInstance as exc:
        return Decision(Action.LEAVE, node, f"not an instance this sidecar understands: {exc}")
    if original is None or instance.endpoint == original:
        return _original(ctx, node, instance)  # a name that is no endpoint is reported there
    if node.owner != 0 and (node.owner == ctx.me.session or ctx.live_peer(node) is not None):
        return _sidecars(ctx, node, original, instance)
    return _in_place(ctx, node, original, instance)


def _mode(ctx: PlanContext, found: Mapped) -> Mode:
    return Mode(found.mode) if found.mode else ctx.me.mode


def _original(ctx: PlanContext, node: RegistryNode, instance: instances.Instance) -> Decision:
    """An instance as its provider wrote it: rewritten in place, unless it is left alone or
    mirrored as any registration would be."""
    found = ctx.containers.resolve(instance.endpoint, ctx.me.advertise_host)
    if (
        instances.endpoint_of(node.name) != instance.endpoint
        or not isinstance(found, Mapped)
        or ctx.excluded(found.container) is not None
        or _mode(ctx, found) is Mode.MIRROR
    ):
        return plan_original(ctx, node)
    parsed = Parsed(instance.endpoint, instance=instance)
    base = Decision(Action.LEAVE, node, "", instance.endpoint, found.advertised, found.container,
                    decided_by=ctx.decided_by(found, node))  # fmt: skip
    refusal = ctx.refusal(node, parsed, found)
    if refusal is not None:
        left = replace(decide(base, Action.LEAVE, refusal), refused=True)
        return replace(left, provisional=ctx.owners.unproven(node))
    _, data, notes = ctx.kind.target(parsed, found, ctx.containers, ctx.me.advertise_host)
    assert data is not None
    reason = published_reason(found) + (f"; {notes}" if notes else "")
    return decide(base, Action.REWRITE_IN_PLACE, reason, SetData(node.path, data, node.version))


def _in_place(
    ctx: PlanContext, node: RegistryNode, original: Endpoint, instance: instances.Instance
) -> Decision:
    """A node whose data names another endpoint than its name: rewritten in place (by this
    sidecar, an earlier run, or another host's), in its provider's session or persistent."""
    found = ctx.containers.resolve(original, ctx.me.advertise_host)
    excluded = ctx.excluded(found.container)
    if excluded is not None:
        return Decision(
            Action.LEAVE, node, excluded, original, container=found.container,
            local=not ctx.me.scope.app, decided_by=ctx.me.scope.describe(),
        )  # fmt: skip
    if isinstance(found, Unmapped):
        return _container_gone(ctx, node, original, instance, found)
    base = Decision(Action.LEAVE, node, "", original, found.advertised, found.container,
                    decided_by=ctx.decided_by(found, node))  # fmt: skip
    if _mode(ctx, found) is Mode.MIRROR:
        return decide(
            base, Action.LEAVE,
            f"rewritten in place for {instance.endpoint} in replace mode; mirror mode leaves it",
        )  # fmt: skip
    refusal = ctx.refusal(node, Parsed(original, instance=instance), found)
    if refusal is not None:
        left = replace(decide(base, Action.LEAVE, refusal), refused=True)
        return replace(left, provisional=ctx.owners.unproven(node))
    provided = restored(ctx, node, original, instance, found)
    if provided is None:
        return decide(base, Action.LEAVE, _not_ours(instance, original))
    parsed = Parsed(original, instance=provided)
    _, data, _notes = ctx.kind.target(parsed, found, ctx.containers, ctx.me.advertise_host)
    if data == node.data:
        return decide(base, Action.KEEP, f"rewritten in place; the node stays {_whose(node)}")
    assert data is not None
    reason = f"advertised address changed from {instance.endpoint}; {published_reason(found)}"
    return decide(base, Action.REWRITE_IN_PLACE, reason, SetData(node.path, data, node.version))


def _sidecars(
    ctx: PlanContext, node: RegistryNode, original: Endpoint, instance: instances.Instance
) -> Decision:
    """An instance rewritten in place in a sidecar's session (this one's, or a live peer's)
    that this sidecar does not remember: migrated into a session by this engine's sidecars."""
    found = ctx.containers.resolve(original, ctx.me.advertise_host)
    provided = restored(ctx, node, original, instance, found) if isinstance(found, Mapped) else None
    peer = ctx.live_peer(node)
    if provided is None and peer is not None:
        return Decision(Action.LEAVE, node, f"managed by {peer.describe()}", original,
                        local=not ctx.me.scope.app)  # fmt: skip
    if provided is None and isinstance(found, Mapped):
        return Decision(Action.LEAVE, node, _not_ours(instance, original), original)
    container = found.container.id if found.container is not None else ""
    data = instances.dumps(provided) if provided is not None else b""
    marker = Marker(node.name, original, container, ctx.me.engine, original_data=data)
    return legacy_instances.plan_migrated(ctx, node, marker)


def _container_gone(
    ctx: PlanContext,
    node: RegistryNode,
    original: Endpoint,
    instance: instances.Instance,
    found: Unmapped,
) -> Decision:
    """An instance rewritten in place whose container endpoint does not map now: its
    provider's business, unless it is persistent and its container stopped."""
    base = Decision(
        Action.LEAVE, node, "", original, container=found.container, local=found.local,
        decided_by=ctx.decided_by(found) if found.local else "",
    )  # fmt: skip
    left_behind = (
        node.owner == 0
        and not ctx.me.scope.app
        and original.host not in ctx.containers.addresses()
        and ctx.containers.in_docker_network(original.host)
        and instance.endpoint.host == ctx.me.advertise_host
    )
    if left_behind:
        # No session removes it, and it names a port of this host that no longer serves it.
        return decide(
            replace(base, local=True), Action.REMOVE,
            f"persistent, rewritten in place for {instance.endpoint}; its container at "
            f"{original} no longer runs", Delete(node.path, node.version),
        )  # fmt: skip
    return decide(
        base, Action.LEAVE,
        f"rewritten in place for {instance.endpoint}; {found.reason}: the node is {_whose(node)}",
    )  # fmt: skip


def restored(
    ctx: PlanContext,
    node: RegistryNode,
    original: Endpoint,
    instance: instances.Instance,
    found: Mapped,
) -> instances.Instance | None:
    """The instance as its provider wrote it, if ``node``'s data is exactly how this sidecar
    rewrites it for ``found.container`` and the endpoint the data names (None: it is not)."""
    container, shown = found.container, instance.endpoint

    def host_port(port: int) -> int | None:
        return ctx.containers.external_port(container, port, shown.host)

    if host_port(original.port) != shown.port:
        return None
    back: dict[int, int] = {}
    for binding in container.published:
        external = host_port(binding.container_port)
        if external is not None:
            back.setdefault(external, binding.container_port)
    try:
        provided = instances.restore(instance, original, back.get)
        _, again, _ = instances.rewrite(provided, shown, host_port)
    except instances.MalformedInstance:
        return None
    return provided if again == node.data else None


def _not_ours(instance: instances.Instance, original: Endpoint) -> str:
    return (
        f"its data names {instance.endpoint}, not {original} nor this sidecar's rewrite of it: "
        "left as it is"
    )


def _whose(node: RegistryNode) -> str:
    if node.owner == 0:
        return "its provider's (persistent)"
    return f"its provider's (session 0x{node.owner:x})"
