"""Where a rewrite is decided: each original registration (what a provider wrote, with its
own address) rewritten, mirrored or left."""

from __future__ import annotations

from dataclasses import dataclass, replace

from sidecar import labels
from sidecar.mapping import Mapped, Unmapped
from sidecar.model import Check, Create, Delete, RegistryNode
from sidecar.ownership import Marker
from sidecar.plan.context import PlanContext
from sidecar.plan.decisions import Action, Decision, Mode, decide, published_reason
from sidecar.plan.parsing import Parsed


@dataclass(frozen=True)
class _Target:
    """Where the rewrite of one original goes, what it holds, and what is there already."""

    mode: Mode
    parent: str
    name: str
    data: bytes
    notes: str
    existing: RegistryNode | None
    ours: bool  # the existing node is this engine's rewrite of the same original
    persistent: bool  # it replaces a persistent registration: it is one too

    @property
    def create(self) -> Create:
        return Create(f"{self.parent}/{self.name}", self.data, persistent=self.persistent)


def plan_original(ctx: PlanContext, node: RegistryNode) -> Decision:
    """Rewrite, mirror or leave one original registration."""
    parsed = ctx.kind.parse(node.name, node.data)
    if isinstance(parsed, str):
        return Decision(Action.LEAVE, node, parsed)
    found = ctx.containers.resolve(parsed.endpoint, ctx.me.advertise_host)
    excluded = ctx.excluded(found.container)
    if excluded is not None:
        return Decision(
            Action.LEAVE, node, excluded, parsed.endpoint, container=found.container,
            local=not ctx.me.scope.app, decided_by=ctx.me.scope.describe(),
        )  # fmt: skip
    if isinstance(found, Unmapped):
        return Decision(
            Action.LEAVE, node, found.reason, parsed.endpoint, container=found.container,
            local=found.local, decided_by=ctx.decided_by(found) if found.local else "",
        )  # fmt: skip
    base = Decision(Action.LEAVE, node, "", parsed.endpoint, found.advertised, found.container,
                    decided_by=ctx.decided_by(found, node))  # fmt: skip
    mode = Mode(found.mode) if found.mode else ctx.me.mode
    marker = Marker(
        node.name, parsed.endpoint, found.container.id, ctx.me.engine, node.owner,
        original_data=node.data if ctx.view.instances else b"",
    )  # fmt: skip
    base = replace(base, marker=marker)
    target = _target(ctx, parsed, found, mode, marker)
    if target is None:
        return decide(
            base, Action.LEAVE, f"label {labels.MODE}=mirror: no mirror root for this path "
            "(mirror mode needs exactly one --root and one --services-root)",
        )  # fmt: skip
    refusal = ctx.refusal(node, parsed, found)
    if refusal is not None:
        left = replace(decide(base, Action.LEAVE, refusal), refused=True)
        if target.ours and mode is Mode.MIRROR:
            # Proof is missing for now, not disproof: keep what was proven before.
            ctx.mirrored.add(target.name)
            left = decide(base, Action.KEEP, f"mirror kept as it was: {refusal}")
        return replace(left, provisional=ctx.owners.unproven(node))
    reason = published_reason(found) + (f"; {target.notes}" if target.notes else "")
    if mode is Mode.MIRROR:
        return _mirror(ctx, base, target, reason)
    return _replace(ctx, base, parsed, target, reason)


def _same_provider(ctx: PlanContext, node: RegistryNode, rewrite: RegistryNode) -> bool:
    """Whether our rewrite names the session that registered ``node`` as its provider's (a
    provider that registered again in a new session gets a rewrite that names the new one:
    a restore proves that session, never the gone one)."""
    marker = ctx.markers.get(rewrite.name)
    return marker is None or marker.provider_session == node.owner


def _target(
    ctx: PlanContext, parsed: Parsed, found: Mapped, mode: Mode, marker: Marker
) -> _Target | None:
    """Where this original's rewrite belongs (None: mirror mode without a mirror root)."""
    parent, existing = ctx.targets(mode)
    if parent is None:
        return None
    name, content, notes = ctx.kind.target(parsed, found, ctx.containers, ctx.me.advertise_host)
    target = existing.get(name)
    ours = target is not None and ctx.is_ours(target, marker.original, found.container.id, mode)
    # A persistent registration's rewrite is persistent too: it outlives the sidecar's
    # session, and its marker says whose it is (it goes when its container stops).
    persistent = mode is Mode.REPLACE and marker.provider_session == 0
    data = ctx.kind.data(marker, content)
    return _Target(mode, parent, name, data, notes, target, ours, persistent)


def _mirror(ctx: PlanContext, base: Decision, target: _Target, reason: str) -> Decision:
    ctx.mirrored.add(target.name)
    existing = target.existing
    if existing is None:
        return decide(base, Action.REWRITE, f"mirrored: {reason}", target.create)
    if target.ours and ctx.kind.same(existing.data, target.data):
        return decide(base, Action.KEEP, f"mirrored at {existing.path}")
    if target.ours:
        return decide(
            base, Action.UPDATE, f"mirror follows its original: {reason}",
            Delete(existing.path, existing.version), target.create,
        )  # fmt: skip
    return decide(base, Action.LEAVE, "the mirrored name is already registered by another party")


def _replace(
    ctx: PlanContext, base: Decision, parsed: Parsed, target: _Target, reason: str
) -> Decision:
    node, existing = base.node, target.existing
    if existing is None:
        stale = [
            Delete(n.path, n.version)
            for n, m in ctx.same_service_rewrites(parsed, node.name)
            if ctx.stale(m, node.owner)
        ]
        return decide(
            base, Action.REWRITE, reason, Delete(node.path, node.version), *stale, target.create
        )
    if (
        target.ours
        and ctx.kind.same(existing.data, target.data)
        and _same_provider(ctx, node, existing)
    ):
        return decide(
            base,
            Action.DROP_ORIGINAL,
            "provider registered its container address again; its rewrite is already there",
            Check(existing.path, existing.version),
            Delete(node.path, node.version),
        )
    if target.ours:
        return decide(
            base, Action.REWRITE, f"provider registered again with new data; {reason}",
            Delete(node.path, node.version), Delete(existing.path, existing.version),
            target.create,
        )  # fmt: skip
    return decide(base, Action.LEAVE, "the rewritten name is already registered by another party")
