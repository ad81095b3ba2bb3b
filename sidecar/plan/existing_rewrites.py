"""The rewrites already made (the sidecar's own nodes): found in a path, remembered but gone
from it, and mirrors; each kept, updated, restored or removed."""

from __future__ import annotations

from dataclasses import replace

from sidecar.mapping import Mapped, Unmapped
from sidecar.model import Create, Delete, RegistryNode
from sidecar.ownership import Marker
from sidecar.plan.context import PlanContext
from sidecar.plan.decisions import Action, Decision, Remembered, decide


def plan_rewritten(ctx: PlanContext, node: RegistryNode) -> Decision:
    """Replace mode: a node this sidecar (or another host's) wrote, found in the path."""
    marker = ctx.markers[node.name]
    assert marker is not None
    if marker.engine != ctx.me.engine:
        return Decision(
            Action.LEAVE, node, f"rewritten by the sidecar of {marker.engine}",
            marker.container_endpoint, local=False,
        )  # fmt: skip
    elsewhere = ctx.elsewhere(node, marker)
    if elsewhere is not None:
        return elsewhere
    base, found = ctx.still_mapped(node, marker)
    if isinstance(found, Unmapped) and found.opted_out:
        return _opted_out(ctx, base, found)
    if isinstance(found, Unmapped):
        removal = decide(base, Action.REMOVE, found.reason, Delete(node.path, node.version))
        return replace(removal, suspended=found.suspended)
    parsed = ctx.kind.parse(marker.original, marker.original_data)
    if isinstance(parsed, str):
        return decide(base, Action.LEAVE, f"its original is unreadable now: {parsed}")
    # Decoding the service of every rewrite at the endpoint is the costly part of a periodic
    # resync: done only for a provider session that is gone.
    if ctx.owners.disconnected(marker.provider_session) and any(
        ctx.owners.connected(m.provider_session)
        for _, m in ctx.same_service_rewrites(parsed, marker.original)
    ):
        return decide(
            base, Action.REMOVE, "its provider session is gone and a newer registration "
            "of the service is rewritten", Delete(node.path, node.version),
        )  # fmt: skip
    wanted, content, _ = ctx.kind.target(parsed, found, ctx.containers, ctx.me.advertise_host)
    data = ctx.kind.data(marker, content)
    if wanted == node.name and ctx.kind.same(node.data, data) and ctx.holds(node):
        return decide(base, Action.KEEP, ctx.managed(node))
    if wanted != node.name and wanted in ctx.by_name:
        return decide(
            base, Action.REMOVE, "duplicate of a registration at the advertised address",
            Delete(node.path, node.version),
        )  # fmt: skip
    if marker.original in ctx.by_name and wanted != node.name:
        # The original is back and maps elsewhere now: its own decision rewrites it anew.
        return decide(
            base, Action.REMOVE, "its original is registered again and is rewritten anew",
            Delete(node.path, node.version),
        )  # fmt: skip
    if wanted != node.name:
        reason = f"advertised address changed from {ctx.endpoint_of(node)}"
    elif not ctx.kind.same(node.data, data):
        reason = "a published port changed"
    else:
        reason = ctx.taking_over(node)
    create = Create(f"{node.parent}/{wanted}", data, persistent=node.owner == 0)
    return decide(base, Action.UPDATE, reason, Delete(node.path, node.version), create)


def _opted_out(ctx: PlanContext, base: Decision, found: Unmapped) -> Decision:
    """One of our rewrites whose container opted out (or has labels the sidecar cannot follow)."""
    node = base.node
    assert base.marker is not None
    if base.marker.original in ctx.by_name:
        return decide(
            base, Action.REMOVE, f"{found.reason}; its original is registered again",
            Delete(node.path, node.version),
        )  # fmt: skip
    # Removing it would unregister the provider: its original went with the swap.
    reason = (
        f"{found.reason}; the rewrite stays until its container stops (the original "
        "cannot be handed back to the provider's session)"
    )
    return ctx.kept(base, reason)


def plan_vanished(ctx: PlanContext, remembered: Remembered) -> Decision:
    """Replace mode: a rewrite this sidecar made that is no longer in the registry."""
    node, marker = remembered.node, remembered.marker
    excluded = ctx.me.scope.excludes(marker.container)
    if excluded is not None:
        return Decision(Action.FORGET, node, excluded, marker.container_endpoint)
    base, found = ctx.still_mapped(node, marker)
    if isinstance(found, Unmapped):
        if found.suspended:
            return decide(base, Action.HOLD, f"{found.reason}; re-created once it serves")
        return decide(base, Action.FORGET, found.reason)
    if marker.original in ctx.by_name:
        return decide(base, Action.FORGET, "its original is registered again")
    parsed = ctx.kind.parse(marker.original, marker.original_data)
    if isinstance(parsed, str):
        return decide(base, Action.FORGET, f"its original is unreadable now: {parsed}")
    later = ctx.same_service_rewrites(parsed, marker.original)
    if any(ctx.stale(marker, m.provider_session) for _, m in later):
        return decide(base, Action.FORGET, "a newer registration of the service replaced it")
    wanted, content, _ = ctx.kind.target(parsed, found, ctx.containers, ctx.me.advertise_host)
    if wanted in ctx.by_name:
        return decide(base, Action.FORGET, "a registration at the advertised address exists")
    unproven = _provider_unproven(ctx, base, marker, found)
    if unproven is not None:
        return unproven
    # A rewrite of a persistent registration (no provider session) is persistent too.
    create = Create(
        f"{node.parent}/{wanted}", ctx.kind.data(marker, content),
        persistent=marker.provider_session == 0,
    )  # fmt: skip
    return decide(base, Action.RESTORE, "its container still serves; re-creating it", create)


def _provider_unproven(
    ctx: PlanContext, base: Decision, marker: Marker, found: Mapped
) -> Decision | None:
    """What becomes of a vanished rewrite whose provider session the servers do not prove
    this host's now (None: they do, or it has none). What it says it replaced (its record,
    or this sidecar's memory) says where to look; only the servers prove."""
    if marker.provider_session == 0:
        return None  # a persistent registration: claimed by label, proven when rewritten
    provider = RegistryNode(base.node.parent, marker.original, b"", marker.provider_session, 0)
    refusal = ctx.owners.refusal(provider, marker.container_endpoint, found.container.addresses)
    if refusal is None:
        return None
    if ctx.owners.disconnected(marker.provider_session):
        return decide(base, Action.FORGET, "its provider session is gone")
    if ctx.owners.unproven(provider):
        return replace(decide(base, Action.HOLD, f"not restored yet: {refusal}"),
                       provisional=True)  # fmt: skip
    return replace(decide(base, Action.LEAVE, f"not restored: {refusal}"), refused=True)


def plan_mirrored(ctx: PlanContext, node: RegistryNode) -> Decision:
    """Mirror mode: a node under the mirror path."""
    marker = (
        ctx.view.parsed.marker(node.data) if not ctx.view.instances else ctx.mirror_marker(node)
    )
    if marker is None or marker.engine != ctx.me.engine:
        return Decision(Action.LEAVE, node, "not mirrored by this host's sidecar", local=False)
    elsewhere = ctx.elsewhere(node, marker)
    if elsewhere is not None:
        return elsewhere
    base = Decision(Action.KEEP, node, "", marker.container_endpoint, marker=marker)
    if node.name not in ctx.mirrored:
        reason = (
            "its original registration is gone"
            if marker.original not in ctx.by_name
            else "its original no longer maps here"
        )
        return decide(base, Action.REMOVE, reason, Delete(node.path, node.version))
    if ctx.me.session in (None, node.owner):
        return decide(
            base,
            Action.KEEP,
            f"mirror managed by this host's sidecar (session 0x{node.owner:x})",
        )
    return decide(
        base, Action.UPDATE, ctx.taking_over(node),
        Delete(node.path, node.version), Create(node.path, node.data),
    )  # fmt: skip
