"""The ``plan`` and ``status`` tables: one row per registration, what happens and why."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sidecar import urls
from sidecar.model import Endpoint, RegistryNode
from sidecar.ownership import Marker
from sidecar.plan import Action, Decision, interface_of
from sidecar.quoting import shorten
from sidecar.report.events import current_endpoint


@dataclass(frozen=True)
class Managed:
    """A node one of the engine's sidecars wrote: ``managed_by`` names the live sidecar whose
    session owns it ("" if none: an earlier run's, to be taken over); ``decided_by`` what
    decided it, seen as that sidecar sees it (its scope, its address source)."""

    node: RegistryNode
    marker: Marker | None
    managed_by: str
    decided_by: str = ""
    container: str = ""  # the container behind a registration written through a proxy


def render_table(decisions: Iterable[Decision]) -> str:
    """The ``plan`` output: one row per registration, what would happen and why."""
    header = (
        "ACTION", "INTERFACE", "REGISTERED", "ADVERTISED", "CONTAINER", "DECIDED BY", "REASON"
    )  # fmt: skip
    rows = [header]
    for d in sorted(decisions, key=lambda d: (d.interface, d.node.name)):
        rows.append(
            (
                str(d.action),
                shorten(d.interface),
                _endpoint(d.original) if d.action is not Action.REMOVE else current_endpoint(d),
                _endpoint(d.advertised) if d.action is not Action.REMOVE else "-",
                shorten(d.container.name) if d.container else "-",
                d.decided_by or "-",
                d.reason,
            )
        )
    return _columns(rows)


def render_status(rows: Iterable[Managed]) -> str:
    """The ``status`` output: the registrations the sidecar manages, from the live registry."""
    table = [
        ("INTERFACE", "ADVERTISED", "CONTAINER ENDPOINT", "CONTAINER", "DECIDED BY", "MANAGED BY")
    ]
    for row in rows:
        marker = row.marker
        table.append(
            (
                shorten(interface_of(row.node.parent)),
                shorten(_node_endpoint(row.node.name)),
                str(marker.container_endpoint) if marker else "-",
                marker.container[:12] if marker else (row.container[:12] or "-"),
                row.decided_by or "-",
                row.managed_by
                or f"no live sidecar: session 0x{row.node.owner:x} of an earlier run "
                "(taken over soon)",
            )
        )
    return _columns(table)


def _columns(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1]
             for row in rows]  # fmt: skip
    return "\n".join(line.rstrip() for line in lines)


def _node_endpoint(name: str) -> str:
    try:
        return str(urls.parse(name).endpoint)
    except urls.MalformedName:
        return name  # an instance node is named host:port


def _endpoint(endpoint: Endpoint | None) -> str:
    return str(endpoint) if endpoint else "-"


@dataclass(frozen=True)
class FleetMember:
    """One live sidecar of the fleet, as its member node and its work say."""

    member: str
    host: str
    scope: str
    session: int
    not_ready: tuple[str, ...]
    managed: int
    refused: int
    paths: int  # the paths the indexer routes to it
    indexer: bool


def render_fleet(rows: Iterable[FleetMember], ignored: Mapping[str, str]) -> str:
    """``status --fleet``: every live sidecar of the ensemble and its share of the work; and
    the nodes in the fleet's paths that count for nothing, with why."""
    table = [("HOST", "SCOPE", "SESSION", "READY", "MANAGED", "REFUSED", "PATHS", "ROLE", "MEMBER")]
    for row in sorted(rows, key=lambda r: (r.host, r.member)):
        table.append((
            row.host, row.scope, f"0x{row.session:x}",
            "yes" if not row.not_ready else "no: " + "; ".join(row.not_ready),
            str(row.managed), str(row.refused), str(row.paths),
            "indexer" if row.indexer else "member", row.member,
        ))  # fmt: skip
    shown = _columns(table)
    if ignored:
        shown += "\n\n" + _columns([("IGNORED", "WHY"), *sorted(ignored.items())])
    return shown
