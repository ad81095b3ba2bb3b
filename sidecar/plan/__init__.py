"""The planner (pure): registry nodes + local containers -> the decision for every node.

``run`` applies the transactions of these decisions, ``plan`` prints them: both come from here.
In replace mode a rewritten node takes the original's place; in mirror mode it is written
under the mirror root and the original stays. A path is either an interface's ``providers``
path (URL node names) or an application's instance path (Curator JSON).

    decisions.py  the inputs and outputs: Identity, PathView, Decision, Action
    parsing.py    one path's nodes parsed once per read: names, instances, markers
    kinds.py      URL nodes versus instance nodes: targets, markers
    context.py    what one pass over one path knows, and the questions decisions ask
    rewrite.py    where a rewrite is decided: each provider's own registration rewritten,
                  mirrored or left
    existing_rewrites.py  the rewrites already made: kept, updated, removed, restored
    recording.py  the record of each rewrite, written in the same transaction
    persistent.py persistent registrations: whose a label says they are
    inplace.py    instance paths: each instance rewritten in place, its node its provider's
    legacy_instances.py  instance nodes an earlier version made its own (renamed, migrated)
"""

from __future__ import annotations

from collections.abc import Container

from sidecar.mapping import ContainerIndex
from sidecar.model import Delete
from sidecar.ownership import Ownership
from sidecar.plan.context import PlanContext
from sidecar.plan.decisions import (
    Action,
    Decision,
    Identity,
    Mode,
    PathView,
    Remembered,
    interface_of,
)
from sidecar.plan.existing_rewrites import plan_mirrored, plan_rewritten, plan_vanished
from sidecar.plan.inplace import plan_instances
from sidecar.plan.kinds import claims_in
from sidecar.plan.parsing import KNOWN_PROTOCOLS
from sidecar.plan.recording import with_records
from sidecar.plan.rewrite import plan_original

__all__ = [
    "KNOWN_PROTOCOLS",
    "Action",
    "Decision",
    "Identity",
    "Mode",
    "PathView",
    "Remembered",
    "claims_in",
    "interface_of",
    "plan_path",
]


def plan_path(
    view: PathView,
    containers: ContainerIndex,
    me: Identity,
    owners: Ownership,
    recorded: Container[str] | None = None,
) -> list[Decision]:
    """Decide every node of one path; applying the result twice changes nothing.
    ``recorded``: the record paths that exist (None: decide without records; see
    sidecar/records.py)."""
    ctx = PlanContext(view, containers, me, owners)
    decisions = plan_instances(ctx) if view.instances else _plan_urls(ctx)
    return decisions if recorded is None else with_records(decisions, ctx, recorded)


def _plan_urls(ctx: PlanContext) -> list[Decision]:
    """Every node of a ``providers`` path, the rewrites remembered but gone, the mirrors."""
    view = ctx.view
    ours = [n for n in view.nodes if ctx.markers[n.name] is not None]
    originals = [n for n in view.nodes if ctx.markers[n.name] is None]
    decisions = [plan_original(ctx, node) for node in originals]
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
            decisions.append(plan_rewritten(ctx, node))
    present = {n.name for n in view.nodes}
    decisions += [plan_vanished(ctx, r) for r in view.remembered if r.node.name not in present]
    return decisions + [plan_mirrored(ctx, node) for node in view.mirror]
