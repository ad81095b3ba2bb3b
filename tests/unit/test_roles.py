"""The roles a sidecar plays in its passes (sidecar/loop/roles.py): which one the settings
choose, and what each does that the others do not."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import structlog

from sidecar.fleet.indexer import MEMBERS
from sidecar.loop.paths import Roots
from sidecar.loop.persistence import Persistence
from sidecar.loop.retries import FIRST
from sidecar.loop.roles import InFleet, Proxying, Watching
from sidecar.loop.wiring import choose_role
from sidecar.model import Endpoint, Outcome, Transaction, WriteResult
from sidecar.ops.metrics import Metrics
from sidecar.proxy import InventoryMapper, ProxyServer
from sidecar.records import RECORDS_ROOT
from sidecar.report.events import Events
from tests.twins import FixedOrigins, MemoryRegistry
from tests.unit.harness import ORIGINAL, PROVIDERS, SHOP, Harness, _settings, rewritten

PER_APP = {"scope": "app", "container": SHOP.name}


class RefusingRegistry(MemoryRegistry):
    """The twin as ``plan`` and ``status`` see the registry: reads as usual, refuses every
    write (as registry/readonly.py does), and counts the leases it was asked for."""

    leases_asked: int = 0

    def start(self, transactions: list[Transaction]) -> Callable[[], list[WriteResult]]:
        refused = [WriteResult(Outcome.DRY_RUN)] * len(transactions)
        return lambda: refused

    def acquire(self, path: str, data: bytes, take_from: int | None = None) -> bool:
        self.leases_asked += 1
        return False


def _proxying() -> tuple[Proxying, InventoryMapper]:
    mapper = InventoryMapper()
    server = ProxyServer(("127.0.0.1", 0), mapper, structlog.get_logger("test"))  # not started
    return Proxying(Persistence(None, Events()), mapper, server), mapper


def _role(options: dict[str, Any], proxying: Proxying | None = None) -> object:
    settings = _settings({"advertise_host": "192.0.2.10", **options})
    return choose_role(settings, MemoryRegistry(), FixedOrigins(None), Events(), Metrics(),
                       Roots(settings), Persistence(None, Events()), proxying)  # fmt: skip


def test_the_settings_choose_one_role_and_a_proxy_takes_no_part_in_a_fleet() -> None:
    """Without --fleet or --proxy-listen the sidecar watches its own paths; with --fleet it is
    a fleet member; with --proxy-listen it is a proxy, --fleet or not."""
    proxying, _ = _proxying()
    assert type(_role({})) is Watching
    assert type(_role({"fleet": True})) is InFleet
    proxy = {**PER_APP, "proxy_listen": "127.0.0.1:2181"}
    assert _role(proxy, proxying) is proxying
    assert _role({**proxy, "fleet": True}, proxying) is proxying


def test_an_observer_decides_as_the_holder_would_but_holds_nothing_and_writes_nothing() -> None:
    """plan's pass decides the rewrite a running sidecar would make and collects it; it asks
    for no lease, and (its registry refusing writes) the registration stays as it was."""
    registry = RefusingRegistry()
    registry.add(f"{PROVIDERS}/{ORIGINAL}")
    twin = Harness(registry=registry, observing=True)
    twin.start()
    assert [(str(d.action), d.node.path) for d in twin.decided if d.action.writes] == [
        ("rewrite", f"{PROVIDERS}/{ORIGINAL}")
    ]
    assert registry.leases_asked == 0
    assert not twin.components.lease.holding
    assert twin.providers() == [ORIGINAL]


def test_a_proxy_holds_its_lease_and_maps_its_app_but_reads_no_registry_path() -> None:
    """A proxy sidecar holds its app's lease, which says it is a proxy, and keeps the
    proxy's mapping to the app's published port; it reads no providers path nor its records,
    and writes nothing: the app's registration is the proxy's to rename."""
    proxying, mapper = _proxying()
    twin = Harness(options={**PER_APP, "proxy_listen": "127.0.0.1:2181"}, proxying=proxying)
    twin.registry.add(f"{PROVIDERS}/{ORIGINAL}")
    twin.start()
    lease = twin.components.lease
    assert lease.holding
    assert json.loads(twin.registry.nodes[lease.path].data)["proxy"] == "true"
    assert mapper.advertised(Endpoint("172.17.0.5", 20880)) == Endpoint("192.0.2.10", 32768)
    read = [r.split(" ", 1)[1] for r in twin.registry.reads]
    assert [path for path in read if path.startswith(("/dubbo/", RECORDS_ROOT))] == []
    assert twin.registry.tree.transactions == []
    assert twin.providers() == [ORIGINAL]


def test_a_watching_sidecar_remembers_what_it_wrote() -> None:
    """The default role writes the rewrite and remembers it as its own (where an observer
    only collects its decisions)."""
    twin = Harness()
    twin.registry.add(f"{PROVIDERS}/{ORIGINAL}")
    twin.start()
    assert isinstance(twin.role, Watching)
    assert list(twin.components.memory.managed) == [PROVIDERS]
    assert twin.registry.tree.transactions


class RefusingMembers(MemoryRegistry):
    """The twin, with the fleet's member nodes refused while ``refusing``."""

    refusing: bool = True

    def acquire(self, path: str, data: bytes, take_from: int | None = None) -> bool:
        if self.refusing and path.startswith(MEMBERS):
            return False
        return super().acquire(path, data, take_from)


def test_a_fleet_member_that_cannot_take_its_part_says_so_until_it_can() -> None:
    """A fleet member whose member node is refused is not ready, saying why; its part is
    tried again later and, once it works, the reason is gone and the indexer it became
    routes the registration to it."""
    registry = RefusingMembers()
    registry.add(f"{PROVIDERS}/{ORIGINAL}")
    twin = Harness(registry=registry, options={"fleet": True})
    twin.start()
    [reason] = twin.role.not_ready()
    assert reason.startswith("not a working member of the fleet: FleetError")
    assert twin.providers() == [ORIGINAL]
    registry.refusing = False
    twin.clock.now += FIRST
    twin.due()
    assert twin.role.not_ready() == []
    twin.settle()
    assert twin.providers() == [rewritten()]
