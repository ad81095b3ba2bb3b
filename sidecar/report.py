"""What the sidecar tells people: one log line per decision, and the ``plan`` table."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import structlog

from sidecar import urls
from sidecar.model import Endpoint
from sidecar.plan import Action, Decision, interface_of
from sidecar.reconciler import Managed
from sidecar.registry.zookeeper import Outcome
from sidecar.syntax import shorten


class DecisionLog:
    """Logs each write once, each node left alone once (until its reason changes)."""

    def __init__(self) -> None:
        self._log = structlog.get_logger("sidecar")
        self._left: dict[str, dict[str, str]] = {}
        self._states: dict[str, str] = {}
        self._problems: dict[str, str] = {}
        self._refused: set[str] = set()
        self._unreadable: set[str] = set()

    def applied(self, decision: Decision, outcome: Outcome) -> None:
        fields = _fields(decision)
        if outcome.ok:
            self._log.info(str(decision.action), **fields)
        elif outcome.denied:
            if decision.node.path not in self._refused:
                self._refused.add(decision.node.path)
                self._log.error(
                    f"{decision.action} refused: not authorised; left alone",
                    error=outcome.error, **fields,
                )  # fmt: skip
        else:
            self._log.warning(
                f"{decision.action} failed, will retry", error=outcome.error, **fields
            )

    def left_alone(self, decision: Decision) -> None:
        if not decision.local:
            # Other hosts' registrations are the normal case in a fleet: a debug line each
            # pass at most, and nothing remembered per node (memory stays flat).
            if self._log.is_enabled_for(logging.DEBUG):
                self._log.debug("left alone", **_fields(decision))
            return
        seen = self._left.setdefault(decision.node.parent, {})
        if seen.get(decision.node.name) == decision.reason:
            return
        seen[decision.node.name] = decision.reason
        self._log.info("left alone", **_fields(decision))

    def not_readable(self, paths: set[str]) -> None:
        """Paths the credentials do not allow reading: reported once each."""
        for path in sorted(paths - self._unreadable):
            self._log.error("not authorised to read; left alone", node=shorten(path))
        self._unreadable |= paths

    def forget_missing(self, parent: str, present: set[str]) -> None:
        # A refused node that is gone may come back changed: report it again then.
        self._refused = {
            path
            for path in self._refused
            if path.rpartition("/")[0] != parent or path.rpartition("/")[2] in present
        }
        seen = self._left.get(parent)
        if seen is None:
            return
        for name in set(seen) - present:
            del seen[name]
        if not seen:
            del self._left[parent]

    def connection(
        self, system: str, state: str, problem: str | None = None, **fields: Any
    ) -> None:
        key = f"{state}:{problem}"
        if self._states.get(system) == key:
            return
        self._states[system] = key
        if problem:
            self._problems[system] = problem
            self._log.warning(f"{system} {state}", problem=problem, **fields)
        else:
            self._log.info(f"{system} {state}", **fields)

    def recovered(self, system: str) -> None:
        """Say once that ``system`` answers again, if its last reported state was a problem."""
        if self._problems.pop(system, None) is not None:
            self._states[system] = "answering"
            self._log.info(f"{system} answering again")

    def progress(self, phase: str, done: int, total: int) -> None:
        """A line of progress during a long read (the first resync of a large registry)."""
        self._log.info("resync progress", phase=phase, done=done, total=total)

    def docker_stale(self) -> None:
        self._log.warning("Docker Engine unreachable: making no changes until it answers again")

    def resync(self, summary: Counter[str], seconds: float, scope: str) -> None:
        self._log.info(
            "resync done", scope=scope, seconds=round(seconds, 3),
            registrations=sum(v for k, v in summary.items() if k != "other_hosts"), **summary,
        )  # fmt: skip

    def info(self, event: str, **fields: Any) -> None:
        self._log.info(event, **fields)

    def debug(self, event: str, **fields: Any) -> None:
        self._log.debug(event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log.error(event, **fields)


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
                _endpoint(d.original) if d.action is not Action.REMOVE else _current(d),
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
                marker.container[:12] if marker else "-",
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


def _fields(decision: Decision) -> dict[str, str]:
    """A decision's log fields; names and paths from the registry can be a megabyte long,
    so each is cut to its first 200 characters and its length."""
    return {
        "interface": shorten(decision.interface),
        "original": _endpoint(decision.original),
        "rewritten": _current(decision)
        if decision.action is Action.REMOVE
        else _endpoint(decision.advertised),
        "container": shorten(decision.container.name) if decision.container else "-",
        "reason": decision.reason,
        "decided_by": decision.decided_by or "-",
        "node": shorten(decision.node.path),
    }


def _endpoint(endpoint: Endpoint | None) -> str:
    return str(endpoint) if endpoint else "-"


def _current(decision: Decision) -> str:
    try:
        return str(urls.parse(decision.node.name).endpoint)
    except urls.MalformedName:
        return "-"
