"""What one pass drives: every component of the loop, built once the engine's identity is
known (see wiring.py), and owned by the loop thread."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sidecar.loop.acl_check import AclCheck
from sidecar.loop.apply import Applier
from sidecar.loop.inventory import Inventory
from sidecar.loop.lease import LeaseKeeper
from sidecar.loop.memory import Memory
from sidecar.loop.observe import Observer
from sidecar.loop.paths import PathIndex, Roots
from sidecar.loop.retries import Retries
from sidecar.ops.metrics import Metrics
from sidecar.plan import Mode
from sidecar.protocols import Registry
from sidecar.report.events import Events
from sidecar.sources.probe import Prober


@dataclass
class Components:
    """What a pass drives, built once the engine's identity is known (see wiring.py); what
    differs between watching, a fleet member, a proxy and an observer is the role's
    (roles.py)."""

    engine_id: str
    mode: Mode
    registry: Registry
    roots: Roots
    index: PathIndex
    memory: Memory
    inventory: Inventory
    lease: LeaseKeeper
    observer: Observer
    applier: Applier
    retries: Retries
    events: Events
    metrics: Metrics
    prober: Prober | None
    stopping: Callable[[], bool]
    acl_check: AclCheck
