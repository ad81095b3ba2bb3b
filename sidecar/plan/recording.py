"""Which record operations go with each decision (see sidecar/records.py): a transaction that
creates one of the sidecar's rewritten nodes in its own path also creates that node's record,
one that deletes such a node deletes its record, all in the same ``multi``. Pure."""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import replace

from sidecar import records
from sidecar.model import Create, Delete, Op, RegistryNode, Transaction
from sidecar.plan.context import PlanContext
from sidecar.plan.decisions import Action, Decision


def with_records(
    decisions: Iterable[Decision], ctx: PlanContext, recorded: Container[str]
) -> list[Decision]:
    """``decisions`` with their record operations; ``recorded``: the record paths that exist."""
    engine = ctx.me.engine
    ours = {n for n, m in ctx.markers.items() if m is not None and m.engine == engine}
    decisions = list(decisions)
    ops_of = [_record_ops(d, ctx.view.parent, ours, engine, recorded) for d in decisions]
    # A rewrite made again under the name of one that vanished has the same record: the
    # vanished one's forgetting must not delete what the new rewrite writes.
    written = {op.path for d, ops in zip(decisions, ops_of, strict=True)
               if d.action is not Action.FORGET for op in ops}  # fmt: skip
    found = []
    for d, ops in zip(decisions, ops_of, strict=True):
        if d.action is Action.FORGET:
            ops = [op for op in ops if op.path not in written]
        if ops:
            before = d.transaction.ops if d.transaction else ()
            d = replace(d, transaction=Transaction((*before, *ops)))
        found.append(d)
    return found


def _record_ops(
    d: Decision, parent: str, ours: set[str], engine: str, recorded: Container[str]
) -> list[Op]:
    if d.action is Action.REWRITE_IN_PLACE:
        # The node is its provider's (again): a record left from its migration must go, or
        # the node would be taken for the sidecar's own.
        return [*_deleted(engine, d.node.path, recorded)]
    if d.marker is None or d.node.parent != parent:
        return []  # not one of ours (or a mirror: mirrors follow their originals)
    if d.action is Action.KEEP:
        if d.rewritten_path == d.node.path and records.record_path(engine, d.node.path) not in (
            recorded
        ):
            return [records.create(engine, d.node, d.marker)]  # written by an earlier version
        return []
    if d.action is Action.FORGET:
        return [*_deleted(engine, d.node.path, recorded)]
    ops: list[Op] = []
    deleted: set[str] = set()
    for op in d.transaction.ops if d.transaction else ():
        op_parent, _, name = op.path.rpartition("/")
        if op_parent != parent:
            continue
        if isinstance(op, Delete) and name in ours and not d.suspended:
            gone = _deleted(engine, op.path, recorded)
            deleted.update(g.path for g in gone)
            ops += gone
        elif isinstance(op, Create):
            node = RegistryNode(parent, name, op.data, 0, 0)
            record = records.create(engine, node, d.marker)
            if record.path in recorded and record.path not in deleted:
                ops.append(Delete(record.path, -1))  # written anew: it may say something else
            ops.append(record)
            if d.action is Action.RESTORE and op.path != d.node.path:
                ops += _deleted(engine, d.node.path, recorded)  # restored under a new name
    return ops


def _deleted(engine: str, rewritten_path: str, recorded: Container[str]) -> list[Delete]:
    record = records.delete(engine, rewritten_path)
    return [record] if record.path in recorded else []
