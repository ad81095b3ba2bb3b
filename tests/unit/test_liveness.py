"""Health tells the truth: the loop, running on its own thread over in-memory twins, is
wedged in one call while work waits: /healthz says it is stuck and /readyz that work is
late, and both recover once the call returns. The watchdog watches progress, not threads."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from sidecar.loop.components import Components
from sidecar.loop.dirty import Dirty
from sidecar.loop.liveness import Bounds, Liveness
from sidecar.loop.loop import Loop, Runtime
from sidecar.loop.paths import Roots
from sidecar.loop.persistence import Persistence
from sidecar.loop.roles import Watching
from sidecar.loop.wiring import build_components
from sidecar.model import RegistryNode
from sidecar.ops.metrics import Metrics
from sidecar.protocols import Reading
from sidecar.report.events import Events
from sidecar.sources.address import AdvertiseHost
from sidecar.sources.static import StaticMapping
from testbed.polling import wait_until
from tests.twins import FixedOrigins, MemoryEngine, MemoryRegistry
from tests.unit.harness import ORIGINAL, PROVIDERS, SHOP, _settings, rewritten

pytestmark = pytest.mark.timeout(60)
BOUNDS = Bounds(late=0.3, stuck=0.6)


class WedgingRegistry(MemoryRegistry):
    """A registry whose reads hang while ``wedged`` is clear (as a call that never returns)."""

    def __init__(self) -> None:
        super().__init__()
        self.flowing = threading.Event()
        self.flowing.set()

    def read_nodes(self, parents: list[str], how: Reading) -> dict[str, list[RegistryNode]]:
        self.flowing.wait()
        return super().read_nodes(parents, how)


@pytest.fixture
def running() -> Iterator[tuple[Loop, WedgingRegistry]]:
    """The loop on its own thread over twins, ready."""
    registry = WedgingRegistry()
    settings = _settings({"advertise_host": "192.0.2.10"})
    events = Events()
    roots = Roots(settings)
    dirty = Dirty(roots.all, roots.source_of)
    registry.on_change = dirty.path_changed
    registry.on_connection = dirty.connection_changed
    engine = MemoryEngine({SHOP.id: SHOP})

    def components_for(engine_id: str, stop: threading.Event) -> Components:
        return build_components(
            settings, engine_id, registry, FixedOrigins(None), engine, StaticMapping(), roots,
            0, events, Metrics(), None, stop.is_set,
            host_addresses=lambda: {"192.0.2.10", "127.0.0.1"},
        )  # fmt: skip

    stopping = threading.Event()
    persistence = Persistence(None, events)
    runtime = Runtime(registry, engine, dirty, events, [], None, 60.0, False, persistence,
                      stopping, components_for, Watching(persistence), BOUNDS)  # fmt: skip
    loop = Loop(runtime, AdvertiseHost("192.0.2.10", "--advertise-host"))
    thread = threading.Thread(target=loop.run, name="loop-under-test", daemon=True)
    thread.start()
    dirty.docker_subscribed()
    try:
        wait_until(lambda: not loop.not_ready(), 10, message="never ready")
        yield loop, registry
    finally:
        registry.flowing.set()
        loop.stop()
        thread.join(10)


def test_a_loop_wedged_while_work_waits_fails_health_then_recovers(
    running: tuple[Loop, WedgingRegistry],
) -> None:
    """A provider registers while the loop's next read never returns: /healthz fails with the
    loop stuck, /readyz with work late; the read returns, the registration is rewritten, and
    both answer OK again."""
    loop, registry = running
    assert not loop.not_healthy()
    registry.flowing.clear()
    registry.add(f"{PROVIDERS}/{ORIGINAL}")
    wait_until(lambda: loop.not_healthy(), 10, message="a wedged loop looked healthy")
    [stuck] = loop.not_healthy()
    assert stuck.startswith("the reconcile loop got nothing done")
    assert any(r.startswith("work has waited") for r in loop.not_ready())
    assert loop.liveness.oldest() > BOUNDS.late
    registry.flowing.set()
    wait_until(lambda: registry.children(PROVIDERS) == [rewritten()], 10)
    wait_until(lambda: not loop.not_healthy() and not loop.not_ready(), 10)
    assert loop.liveness.oldest() == 0.0


def test_an_idle_loop_is_neither_stuck_nor_late() -> None:
    """No work waits: however long nothing happens, the loop is healthy and on time."""
    now = [0.0]
    liveness = Liveness(BOUNDS, lambda: None, clock=lambda: now[0])
    liveness.ended(None)
    now[0] += 3600
    assert (liveness.stuck(), liveness.late(), liveness.oldest()) == ("", "", 0.0)
    marked = now[0]
    waiting = Liveness(BOUNDS, lambda: marked, clock=lambda: now[0])
    now[0] += 1
    assert waiting.stuck()
    assert waiting.late()
