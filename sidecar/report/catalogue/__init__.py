"""The catalogue of every stable log ``event`` name: what it means, its cause, what to do."""

from __future__ import annotations

from sidecar.report.catalogue import decisions, operations, systems
from sidecar.report.catalogue.entry import Event

# A name with ``<path>`` in it carries the node's path there (the record's own path).
EVENTS: dict[str, Event] = decisions.EVENTS | systems.EVENTS | operations.EVENTS

__all__ = ["EVENTS", "Event"]
