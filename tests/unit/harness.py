"""A reconciler over in-memory twins, driven one pass at a time (for tests of the loop)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sidecar import urls
from sidecar.config import Settings, load_settings
from sidecar.fleet.indexer import FLEET_ROOT
from sidecar.fleet.member import FleetKeeper
from sidecar.loop.dirty import Dirty, Work
from sidecar.loop.observe import Observer
from sidecar.loop.paths import Roots
from sidecar.loop.persistence import Persistence
from sidecar.loop.reconcile import Reconciler
from sidecar.loop.retries import Retries
from sidecar.loop.roles import InFleet, Observing, Proxying, Role
from sidecar.loop.wiring import build_components, choose_role
from sidecar.model import Container, Endpoint, PublishedPort
from sidecar.ops.metrics import Metrics
from sidecar.plan import Decision
from sidecar.report.events import Events
from sidecar.sources.address import AdvertiseHost
from sidecar.sources.nat import NatSnapshot
from sidecar.sources.static import StaticMapping
from tests.twins import FixedOrigins, MemoryEngine, MemoryRegistry
from tests.unit.scenarios import url_name

PROVIDERS = "/dubbo/com.example.DemoService/providers"
SHOP = Container(
    "c1" * 32, "shop-1", "bridge", ("172.17.0.5",), (PublishedPort(20880, "0.0.0.0", 32768),)
)
ORIGINAL = url_name("172.17.0.5")
ADDRESS = AdvertiseHost("192.0.2.10", "--advertise-host")


def rewritten(host: str = "192.0.2.10", port: int = 32768) -> str:
    return urls.parse(ORIGINAL).with_endpoint(Endpoint(host, port))


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    """A reconciler over twins, driven one pass at a time."""

    registry: MemoryRegistry = field(default_factory=MemoryRegistry)
    engine: MemoryEngine = field(default_factory=lambda: MemoryEngine({SHOP.id: SHOP}))
    origins: FixedOrigins = field(default_factory=lambda: FixedOrigins(None))
    clock: Clock = field(default_factory=Clock)
    observing: bool = False
    proxying: Proxying | None = None  # proxy mode: the role, with its mapping and server
    options: dict[str, Any] = field(default_factory=dict)  # settings beyond the defaults
    engine_id: str = "TWIN@host"
    host: str = "192.0.2.10"  # this host's address, advertised
    nat: Callable[[], NatSnapshot] | None = None  # the NAT table's snapshot (--nat-table)

    def __post_init__(self) -> None:
        self.settings = _settings({"advertise_host": self.host, **self.options})
        events = Events()
        roots = Roots(self.settings)
        engine = None if self.settings.docker_url == "none" else self.engine
        components = build_components(
            self.settings, self.engine_id, self.registry, self.origins, engine,
            StaticMapping(), roots, 0, events, Metrics(), None,
            lambda: False, host_addresses=lambda: {self.host, "127.0.0.1"}, nat=self.nat,
        )  # fmt: skip
        components.retries = Retries(self.clock)
        components.observer = Observer(
            self.registry, self.origins, roots, self.settings.host_address, self.clock,
            member=self.settings.fleet,
        )  # fmt: skip
        self.components = components
        self.role: Role = (
            Observing() if self.observing else
            choose_role(self.settings, self.registry, self.origins, events, components.metrics,
                        roots, Persistence(None, events), self.proxying)
        )  # fmt: skip
        if isinstance(self.role, InFleet):
            self.role.fleet._clock = self.clock
        address = AdvertiseHost(self.host, "--advertise-host")
        self.reconciler = Reconciler(components, self.role, address)
        # Watches and their events as in the daemon: the registry's callback marks work.
        self.dirty = Dirty(roots.all, roots.source_of, FLEET_ROOT if self.settings.fleet else None)
        self.registry.on_change = self.dirty.path_changed

    @property
    def fleet(self) -> FleetKeeper | None:
        """This sidecar's part in the fleet (None: it is in none)."""
        return self.role.fleet if isinstance(self.role, InFleet) else None

    @property
    def decided(self) -> list[Decision]:
        """What an observing sidecar (plan) decided so far."""
        assert isinstance(self.role, Observing)
        return self.role.decided

    def settle(self, passes: int = 20) -> None:
        """Run passes over the work the watches marked, until there is none."""
        for _ in range(passes):
            if not self.one_pass():
                return
        raise AssertionError(f"still busy after {passes} passes")

    def one_pass(self) -> bool:
        """One pass of the loop over the work marked so far; False if there was none."""
        self.dirty.watch_leases(self.components.lease.watched_paths())
        work = self.dirty.take(timeout=0)
        if not work:
            return False
        self.run(work)
        if work.more:
            self.dirty.again()
        return True

    def run(self, work: Work) -> None:
        self.reconciler.absorb(work)
        self.reconciler.run_pass(work)

    def start(self) -> None:
        """The first pass: Docker's events subscribed, everything read."""
        self.run(Work(full=True, lease=True, all_containers=True, docker=[""]))

    def due(self) -> None:
        """A pass over whatever retries are due (and nothing else)."""
        self.run(Work())

    def providers(self) -> list[str]:
        return self.registry.children(PROVIDERS)


def _settings(options: dict[str, Any]) -> Settings:
    return load_settings({"state_file": "", "listen": "", "probe_seconds": 0,
                          "docker_url": "unix:///twin", **options})  # fmt: skip
