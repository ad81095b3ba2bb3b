"""One entry of the catalogue of log events, and the groups that order the events page."""

from __future__ import annotations

from typing import NamedTuple


class Event(NamedTuple):
    """One event name: ``group`` orders the events page; ``fix`` is empty when there is
    nothing to do (the event reports normal work)."""

    group: str
    meaning: str
    cause: str
    fix: str = ""


DECISIONS = "Decisions"
ZOOKEEPER = "ZooKeeper"
DOCKER = "Docker and mappings"
ADDRESS = "Advertised address"
SCOPE = "Scope, lease, state file"
FLEET = "Fleet"
PROXY = "Proxy mode"
LIFECYCLE = "Lifecycle"
