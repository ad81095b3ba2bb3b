"""What the sidecar tells people as it runs: one log line per decision or state change.

Every line's ``event`` is a stable machine name (``catalogue/`` lists them), with the facts
as structured fields: tests and log pipelines match on those, never on wording. Decisions:
the action (``rewrite``, ``rewrite-in-place``, ``update``, ``restore``, ``remove``,
``drop-original``), ``write_failed``, ``write_denied``, ``write_too_large``, ``left_alone``. States:
``<system>_<state>`` (e.g. ``zookeeper_connected``, ``lease_standing_by``, ``docker_lost``),
logged once per change.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import structlog

from sidecar import urls
from sidecar.model import Endpoint, Outcome, WriteResult
from sidecar.plan import Action, Decision
from sidecar.quoting import shorten


class Events:
    """Logs each write once, each node left alone once (until its reason changes), and each
    state of each system once."""

    def __init__(self, decisions: bool = True) -> None:
        """``decisions`` False: decisions are not logged (plan and status print them)."""
        self._decisions = decisions
        self._log = structlog.get_logger("sidecar")
        self._left: dict[str, dict[str, str]] = {}
        self._states: dict[str, str] = {}
        self._problems: dict[str, str] = {}
        self._refused: set[str] = set()
        self._unreadable: set[str] = set()

    def applied(self, decision: Decision, result: WriteResult) -> None:
        if not self._decisions:
            return
        fields = _fields(decision)
        if result.ok:
            self._log.info(str(decision.action), **fields)
        elif result.outcome in (Outcome.DENIED, Outcome.TOO_LARGE):
            # Not retried: said once, until the node changes.
            if decision.node.path not in self._refused:
                self._refused.add(decision.node.path)
                event = "write_denied" if result.outcome is Outcome.DENIED else "write_too_large"
                self._log.error(event, action=str(decision.action), error=result.error,
                                **fields)  # fmt: skip
        elif result.outcome is not Outcome.DRY_RUN:
            self._log.warning("write_failed", action=str(decision.action), error=result.error,
                              **fields)  # fmt: skip

    def left_alone(self, decision: Decision) -> None:
        if not self._decisions:
            return
        if not decision.local:
            # Other hosts' registrations are the normal case in a fleet: a debug line each
            # pass at most, and nothing remembered per node (memory stays flat).
            if self._log.is_enabled_for(logging.DEBUG):
                self._log.debug("left_alone", **_fields(decision))
            return
        seen = self._left.setdefault(decision.node.parent, {})
        if seen.get(decision.node.name) == decision.reason:
            return
        seen[decision.node.name] = decision.reason
        self._log.info("left_alone", **_fields(decision))

    def not_readable(self, paths: set[str]) -> None:
        """Paths the credentials do not allow reading: reported once each."""
        if not self._decisions:
            return
        for path in sorted(paths - self._unreadable):
            self._log.error("path_not_readable", node=shorten(path))
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
        """``<system>_<state>``, once per change of state or problem."""
        key = f"{state}:{problem}"
        if self._states.get(system) == key:
            return
        self._states[system] = key
        if problem:
            self._problems[system] = problem
            self._log.warning(f"{system}_{state}", problem=problem, **fields)
        else:
            self._log.info(f"{system}_{state}", **fields)

    def recovered(self, system: str) -> None:
        """Say once that ``system`` answers again, if its last reported state was a problem."""
        if self._problems.pop(system, None) is not None:
            self._states[system] = "answering"
            self._log.info(f"{system}_answering")

    def progress(self, phase: str, done: int, total: int) -> None:
        """A line of progress during a long read (the first resync of a large registry)."""
        self._log.info("resync_progress", phase=phase, done=done, total=total)

    def docker_stale(self) -> None:
        self._log.warning("docker_stale", problem="Docker Engine unreachable: making no "
                          "changes until it answers again")  # fmt: skip

    def resync(self, summary: Counter[str], seconds: float, kind: str) -> None:
        self._log.info(
            "resync_done", kind=kind, seconds=round(seconds, 3),
            registrations=sum(v for k, v in summary.items() if k != "other_hosts"), **summary,
        )  # fmt: skip

    def info(self, event: str, **fields: Any) -> None:
        self._log.info(event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log.warning(event, **fields)

    def debug(self, event: str, **fields: Any) -> None:
        self._log.debug(event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log.error(event, **fields)

    def exception(self, event: str, **fields: Any) -> None:
        """An unexpected error, with its traceback."""
        self._log.exception(event, **fields)


def _fields(decision: Decision) -> dict[str, str]:
    """A decision's log fields; names and paths from the registry can be a megabyte long,
    so each is cut to its first 200 characters and its length."""
    return {
        "interface": shorten(decision.interface),
        "original": _endpoint(decision.original),
        "rewritten": current_endpoint(decision)
        if decision.action is Action.REMOVE
        else _endpoint(decision.advertised),
        "container": shorten(decision.container.name) if decision.container else "-",
        "reason": decision.reason,
        "decided_by": decision.decided_by or "-",
        "node": shorten(decision.node.path),
    }


def _endpoint(endpoint: Endpoint | None) -> str:
    return str(endpoint) if endpoint else "-"


def current_endpoint(decision: Decision) -> str:
    """The endpoint a node's own name registers ("-" if it has none)."""
    try:
        return str(urls.parse(decision.node.name).endpoint)
    except urls.MalformedName:
        return "-"
