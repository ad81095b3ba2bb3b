"""The sidecar's own application-level instance nodes, in replace mode: those an earlier
version renamed to the advertised endpoint, and those it migrated back under their original
names.

An earlier version rewrote an instance the way it rewrites URLs: the provider's node
deleted, a node named after the advertised endpoint created in the sidecar's session (the
provider's own ``updateService`` then failed with NoNode). Such a node is migrated without a
gap: one transaction deletes it and creates the node under its original name with the
rewritten data. That node stays in the sidecar's session until the provider registers again
(Curator deletes and re-creates its node after a reconnect, and it is then rewritten in
place in the provider's session). Until then it is the sidecar's: re-created if the
sidecar's session is lost, taken over by the next run, removed when its container stops. It
is not suspended while its container does not serve, and not re-created when it vanishes
while the sidecar's session lives: then its provider deleted it (Curator, registering again,
deletes the node and creates its own, and gives up if the node is back in between;
unregistering, it only deletes it). The sidecar remembers these nodes (their records),
since their data is the application's.
"""

from __future__ import annotations

from dataclasses import replace

from sidecar import instances
from sidecar.mapping import Mapped, Unmapped
from sidecar.model import Check, Create, Delete, Op, RegistryNode
from sidecar.ownership import Marker
from sidecar.plan.context import PlanContext
from sidecar.plan.decisions import Action, Decision, Remembered, decide
from sidecar.plan.parsing import Parsed

_UNTIL = "in this sidecar's session until its provider registers again"


def plan_migrated(ctx: PlanContext, node: RegistryNode, marker: Marker) -> Decision:
    """A node of a sidecar's session under its original's name (migrated in place)."""
    if marker.engine != ctx.me.engine:
        return Decision(Action.LEAVE, node, f"rewritten by the sidecar of {marker.engine}",
                        marker.container_endpoint, local=False)  # fmt: skip
    elsewhere = ctx.elsewhere(node, marker)
    if elsewhere is not None:
        return elsewhere
    base, found = ctx.still_mapped(node, marker)
    base = replace(base, own_in_place=True)
    if isinstance(found, Unmapped):
        return _unmapped(ctx, base, found)
    data = _rewritten(ctx, marker, found)
    if data is None:
        return decide(base, Action.LEAVE, "its original is unreadable now")
    if data == node.data and ctx.holds(node):
        return decide(base, Action.KEEP, f"rewritten in place, {_UNTIL} (session 0x{node.owner:x})")
    reason = ctx.taking_over(node) if data == node.data else "the advertised address changed"
    return decide(
        base, Action.UPDATE, reason, Delete(node.path, node.version), Create(node.path, data)
    )


def plan_renamed(
    ctx: PlanContext, node: RegistryNode, marker: Marker, original: Decision | None
) -> Decision:
    """A node an earlier version renamed to the advertised endpoint: migrated in place.
    ``original``: the decision about its original, if the provider registered it again."""
    elsewhere = ctx.elsewhere(node, marker)
    if elsewhere is not None:
        return elsewhere
    base, found = ctx.still_mapped(node, marker)
    if original is not None:
        registered = original.node
        ops: list[Op] = [Delete(node.path, node.version)]
        if original.action is Action.REWRITE_IN_PLACE:
            # Gone only once its original holds the rewrite: no moment without the instance.
            ops.insert(0, Check(registered.path, registered.version + 1))
        return decide(base, Action.REMOVE, "its original is registered again", *ops)
    if isinstance(found, Unmapped):
        return _unmapped(ctx, base, found)
    data = _rewritten(ctx, marker, found)
    if data is None:
        return decide(base, Action.LEAVE, "its original is unreadable now")
    return decide(
        replace(base, own_in_place=True), Action.UPDATE,
        f"migrated in place: back under its original name, {_UNTIL}",
        Delete(node.path, node.version), Create(f"{node.parent}/{marker.original}", data),
    )  # fmt: skip


def plan_gone(ctx: PlanContext, remembered: Remembered) -> Decision:
    """A node of the sidecar's own, remembered but gone with a session (this sidecar's was
    lost, or it is an earlier run's): re-created in place while its container serves."""
    node, marker = remembered.node, remembered.marker
    excluded = ctx.me.scope.excludes(marker.container)
    if excluded is not None:
        return Decision(Action.FORGET, node, excluded, marker.container_endpoint)
    base, found = ctx.still_mapped(node, marker)
    if marker.original in ctx.by_name:
        return decide(base, Action.FORGET, "its original is registered again")
    if node.name == marker.original and node.owner == ctx.me.session:
        return decide(base, Action.FORGET, "its provider deleted it (registering again, or "
                      "unregistering) while this sidecar's session lives")  # fmt: skip
    if isinstance(found, Unmapped):
        if found.suspended:
            return decide(base, Action.HOLD, f"{found.reason}; re-created once it serves")
        return decide(base, Action.FORGET, found.reason)
    data = _rewritten(ctx, marker, found)
    if data is None:
        return decide(base, Action.FORGET, "its original is unreadable now")
    return decide(
        replace(base, own_in_place=True), Action.RESTORE,
        f"its container still serves; re-created in place, {_UNTIL}",
        Create(f"{node.parent}/{marker.original}", data),
    )  # fmt: skip


def _unmapped(ctx: PlanContext, base: Decision, found: Unmapped) -> Decision:
    node = base.node
    if not found.opted_out and not found.suspended:
        return decide(base, Action.REMOVE, found.reason, Delete(node.path, node.version))
    # Removing it would unregister the provider: its own node went with the rename. (Nor is
    # an instance suspended: a suspended node that vanishes is not told from one its
    # provider deleted.)
    reason = f"{found.reason}; the rewrite stays until its container stops"
    return ctx.kept(base, reason)


def _rewritten(ctx: PlanContext, marker: Marker, found: Mapped) -> bytes | None:
    """The data of the marker's original rewritten for today's mapping (None: unreadable)."""
    try:
        original = instances.parse(marker.original, marker.original_data)
    except instances.MalformedInstance:
        return None
    parsed = Parsed(original.endpoint, instance=original)
    _, data, _ = ctx.kind.target(parsed, found, ctx.containers, ctx.me.advertise_host)
    return data
