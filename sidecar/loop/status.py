"""``status``: the registrations this engine's sidecars manage, read from the live registry,
and what decided each as the sidecar that manages it sees it."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import replace
from typing import Any

from sidecar.fleet.indexer import ELECTION, MEMBERS, WORK
from sidecar.fleet.nodes import ballot_member, ballot_problem, read_member
from sidecar.fleet.routes import Member
from sidecar.fleet.work import parse_part
from sidecar.loop.reconcile import Reconciler
from sidecar.model import RegistryNode
from sidecar.ownership import read_marker
from sidecar.plan import Decision
from sidecar.protocols import Registry
from sidecar.report.tables import FleetMember, Managed
from sidecar.scope import HOST_LEASE, Lease, Scope, peers_from


def managed_now(reconciler: Reconciler, observed: list[Decision]) -> list[Managed]:
    """Every node this engine's sidecars wrote, with the live sidecar owning it; ``observed``:
    the decisions of the observing pass just made."""
    p = reconciler.components
    lease_nodes = p.registry.read_paths([p.lease.lease_parent])[p.lease.lease_parent]
    leases = peers_from({n.name: (n.owner, n.data) for n in lease_nodes}, own_lease="")
    sources = reconciler.all_paths()
    mirrors = {m: path for path in sources if (m := p.roots.mirror_path(path))}
    found = []
    nodes_by_lease: dict[Lease | None, dict[str, str]] = defaultdict(dict)  # node: source
    for parent, nodes in sorted(p.registry.read_paths([*sources, *mirrors]).items()):
        source = mirrors.get(parent, parent)
        instance_path = p.roots.root_of(source) in p.roots.services_roots
        for node in nodes:
            marker = read_marker(node.data)
            ours = marker is not None and marker.engine == p.engine_id
            if ours or (instance_path and node.owner in leases):
                lease = _managing(leases, node.owner, marker.container if marker else "")
                found.append((node, marker, lease))
                nodes_by_lease[lease][node.path] = source
    # What decided each: the planner's view from the sidecar that manages it.
    decided: dict[str, str] = {}
    for lease, managed in nodes_by_lease.items():
        me = reconciler.identity(None)
        if lease is not None:
            scope = Scope(app=lease.container, app_name=lease.container_name)
            me = replace(me, scope=scope, advertise_source=lease.advertise_source or
                         me.advertise_source)  # fmt: skip
        plan = reconciler.plan(sorted(set(managed.values())), None, me)
        decided |= {d.node.path: d.decided_by for d in plan if d.node.path in managed}
    rows = [
        Managed(node, marker, _describe(lease, node.owner), decided.get(node.path, ""))
        for node, marker, lease in found
    ]
    return rows + _through_proxies(observed, leases)


def _managing(leases: dict[int, Lease], owner: int, container: str) -> Lease | None:
    """The live sidecar managing a node: its session's; for a persistent rewrite (in no
    session), the one whose scope holds its container."""
    if owner != 0:
        return leases.get(owner)
    per_app = [lease for lease in leases.values() if lease.container == container]
    per_host = [lease for lease in leases.values() if lease.name == HOST_LEASE]
    return next(iter(per_app or per_host), None)


def _describe(lease: Lease | None, owner: int) -> str:
    if lease is None:
        return ""
    return lease.describe() + (", a persistent node" if owner == 0 else "")


def _through_proxies(observed: list[Decision], leases: dict[int, Lease]) -> list[Managed]:
    """Registrations the apps of proxy sidecars wrote themselves, with their published
    address (the pass just made saw them left to those sidecars)."""
    proxies = {lease.container: lease for lease in leases.values() if lease.proxy}
    return [
        Managed(d.node, None, proxies[d.container.id].describe(), "proxy", d.container.id)
        for d in observed
        if d.container is not None and d.container.id in proxies and d.marker is None
    ]


def fleet_now(registry: Registry) -> tuple[list[FleetMember], dict[str, str]]:
    """Every live member of the fleet, from its member node, its work node and the ballots;
    and the nodes there that count for nothing (anyone can write these paths), with why."""
    ignored: dict[str, str] = {}
    members: dict[str, tuple[Member, RegistryNode]] = {}
    for node in registry.read_paths([MEMBERS], watch=False)[MEMBERS]:
        found = read_member(node)
        if isinstance(found, str):
            ignored[node.path] = found
        else:
            members[node.name] = (found, node)
    indexer = ""
    for ballot in sorted(registry.read_paths([ELECTION], watch=False)[ELECTION],
                         key=lambda n: n.name):  # fmt: skip
        problem = ballot_problem(ballot)
        held = members.get(ballot_member(ballot) or "")
        if problem is None and (held is None or held[0].session != ballot.owner):
            problem = "its member holds no member node in its session"
        if problem is not None:
            ignored[ballot.path] = problem
        elif not indexer:
            indexer = ballot_member(ballot) or ""
    works = {n.name: n for n in registry.read_paths([WORK], watch=False)[WORK]}
    rows = []
    for name, (member, node) in members.items():
        about = _json(node.data)
        paths = _work_paths(registry, works.get(name), ignored)
        rows.append(FleetMember(
            name, str(about.get("host", "?")), str(about.get("scope", "?")), member.session,
            tuple(str(r) for r in about.get("not_ready", []) or []),
            _int(about.get("managed")), _int(about.get("refused")), paths, name == indexer,
        ))  # fmt: skip
    return rows, ignored


def _work_paths(registry: Registry, first: RegistryNode | None, ignored: dict[str, str]) -> int:
    """How many paths a member's work names, over all its parts; unreadable parts are added
    to ``ignored``."""
    if first is None:
        return 0
    try:
        head = parse_part(first.data)
    except ValueError as exc:
        ignored[first.path] = str(exc)
        return 0
    found = set(head.paths)
    if head.parts > 1:
        for node in registry.read_paths([first.path], watch=False)[first.path]:
            if node.name.isdigit() and 0 < int(node.name) < head.parts:
                try:
                    found |= set(parse_part(node.data).paths)
                except ValueError as exc:
                    ignored[node.path] = str(exc)
    return len(found)


def _json(data: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
