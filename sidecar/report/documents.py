"""``plan`` and ``status`` as JSON documents (``--output json``): what their tables show, one
object per row with named keys, full values (never shortened), for scripts. ``version`` changes
only when a key goes or changes meaning; keys may be added."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sidecar import instances, urls
from sidecar.model import Endpoint
from sidecar.plan import Action, Decision, interface_of
from sidecar.report.tables import FleetMember, Managed

VERSION = 1


def plan_document(decisions: Iterable[Decision], unreadable: Iterable[str]) -> dict[str, Any]:
    """``plan``: each registration, what would happen to it and why; the paths not readable."""
    rows = []
    for d in sorted(decisions, key=lambda d: (d.interface, d.node.name)):
        removed = d.action is Action.REMOVE
        rows.append(
            {
                "action": str(d.action),
                "interface": d.interface,
                "path": d.node.path,
                "registered": _endpoint(_named(d.node.name) if removed else d.original),
                "advertised": None if removed else _endpoint(d.advertised),
                "container": (
                    {"id": d.container.id, "name": d.container.name} if d.container else None
                ),
                "decided_by": d.decided_by or None,
                "reason": d.reason,
            }
        )
    return {"version": VERSION, "kind": "plan", "decisions": rows, "unreadable": sorted(unreadable)}


def status_document(managed: Iterable[Managed]) -> dict[str, Any]:
    """``status``: the registrations this engine's sidecars manage, from the live registry;
    ``managed_by`` null when no live sidecar owns one (an earlier run's, taken over soon)."""
    rows = []
    for row in managed:
        marker = row.marker
        rows.append(
            {
                "interface": interface_of(row.node.parent),
                "path": row.node.path,
                "advertised": _endpoint(_named(row.node.name)),
                "container_endpoint": _endpoint(marker.container_endpoint if marker else None),
                "container": (marker.container if marker else row.container) or None,
                "decided_by": row.decided_by or None,
                "managed_by": row.managed_by or None,
                "session": f"0x{row.node.owner:x}",
            }
        )
    return {"version": VERSION, "kind": "status", "registrations": rows}


def fleet_document(members: Iterable[FleetMember], ignored: Mapping[str, str]) -> dict[str, Any]:
    """``status --fleet``: every live sidecar of the fleet and its share of the work; the
    nodes in the fleet's paths that count for nothing, with why."""
    rows = [
        {
            "host": m.host,
            "scope": m.scope,
            "session": f"0x{m.session:x}",
            "ready": not m.not_ready,
            "not_ready": list(m.not_ready),
            "managed": m.managed,
            "refused": m.refused,
            "paths": m.paths,
            "role": "indexer" if m.indexer else "member",
            "member": m.member,
        }
        for m in sorted(members, key=lambda m: (m.host, m.member))
    ]
    others = [{"node": node, "why": why} for node, why in sorted(ignored.items())]
    return {"version": VERSION, "kind": "fleet", "members": rows, "ignored": others}


def _named(name: str) -> Endpoint | None:
    """The endpoint a node's name registers: a provider URL's, or an instance's host:port."""
    try:
        return urls.parse(name).endpoint
    except urls.MalformedName:
        return instances.endpoint_of(name)


def _endpoint(endpoint: Endpoint | None) -> dict[str, Any] | None:
    return {"host": endpoint.host, "port": endpoint.port} if endpoint else None
