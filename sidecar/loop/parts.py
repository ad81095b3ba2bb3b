"""What one pass drives: every component of the loop, built once the engine's identity is
known (see wiring.py), and owned by the loop thread."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sidecar.fleet.member import FleetKeeper
from sidecar.loop.acl_check import AclCheck
from sidecar.loop.apply import Applier
from sidecar.loop.inventory import Inventory
from sidecar.loop.lease import LeaseKeeper
from sidecar.loop.memory import Memory
from sidecar.loop.observe import Observer
from sidecar.loop.paths import PathIndex, Roots
from sidecar.loop.persistence import Persistence
from sidecar.loop.retries import Retries
from sidecar.ops.metrics import Metrics
from sidecar.plan import Mode
from sidecar.proxy import InventoryMapper
from sidecar.report.events import Events
from sidecar.seams import Registry
from sidecar.sources.probe import Prober


@dataclass
class Parts:
    """What a pass drives, built once the engine's identity is known (see wiring.py)."""

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
    persistence: Persistence
    retries: Retries
    events: Events
    metrics: Metrics
    prober: Prober | None
    stopping: Callable[[], bool]
    acl_check: AclCheck
    observing: bool = False  # plan and status: decide as an observer, hold no lease
    # Proxy mode: the app's own requests are rewritten in flight from this mapping; the loop
    # keeps it current and holds the lease, and reads no registry path at all.
    proxy: InventoryMapper | None = None
    # In a fleet: membership, the election and the indexer, and the work it publishes.
    fleet: FleetKeeper | None = None
