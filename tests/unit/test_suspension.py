"""No work is dropped while the connection is down: what is marked dirty while it is
suspended, or fails with it, is done once it is back, resumed session or new, with or
without --fleet; what waits for a backoff is done at once then. On in-memory twins;
tests/integration/test_lifecycle.py restarts a real server under the sidecar."""

from __future__ import annotations

import pytest

from sidecar.loop.dirty import Work
from sidecar.model import Connection, Origin, Outcome, Transaction, WriteResult
from tests.unit.fleets import fleet, provider_on, settle
from tests.unit.harness import ORIGINAL, PROVIDERS, Harness, rewritten

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("back", [Connection.RESUMED, Connection.CONNECTED])
def test_a_registration_made_while_suspended_is_rewritten_once_connected(
    back: Connection,
) -> None:
    """The connection drops; a provider registers and its watch fires while the sidecar
    cannot read; the connection comes back (same session or a new one): it is rewritten."""
    twin = Harness()
    twin.start()
    twin.registry.connected = False
    twin.dirty.connection_changed(Connection.SUSPENDED)
    twin.registry.add(f"{PROVIDERS}/{ORIGINAL}")
    twin.settle()
    assert twin.providers() == [ORIGINAL]
    twin.registry.connected = True
    twin.dirty.connection_changed(back)
    twin.settle()
    assert twin.providers() == [rewritten()]


def test_a_registration_the_indexer_heard_of_while_suspended_reaches_its_host() -> None:
    """With --fleet: the indexer's watch fires while its connection is down; once it is
    back the path is indexed and routed, and the provider's host rewrites it."""
    hosts, tree = fleet(3)
    [indexer] = [h for h in hosts if h.fleet and h.fleet.indexer]
    provider_on(hosts, 1, 0x2003)
    indexer.registry.connected = False
    indexer.dirty.connection_changed(Connection.SUSPENDED)
    tree.add(f"{PROVIDERS}/{ORIGINAL}", owner=0x2003)
    settle(hosts)
    assert tree.children(PROVIDERS) == [ORIGINAL]
    indexer.registry.connected = True
    indexer.dirty.connection_changed(Connection.RESUMED)
    settle(hosts)
    assert tree.children(PROVIDERS) == [rewritten("192.0.2.2")]


def test_a_write_lost_with_the_connection_is_tried_again_as_soon_as_it_is_back() -> None:
    """A rewrite whose outcome is unknown (the connection went) waits for its backoff; the
    connection coming back makes it due at once, and it is written."""
    twin = Harness()
    twin.origins.origins = {0x2002: Origin("192.0.2.10", "zk")}
    twin.registry.add(f"{PROVIDERS}/{ORIGINAL}")
    apply = twin.registry._apply
    lost = [WriteResult(Outcome.UNKNOWN, "ConnectionLoss")] * 5

    def losing(transaction: Transaction) -> WriteResult:
        return lost.pop() if lost else apply(transaction)

    twin.registry._apply = losing  # type: ignore[method-assign]
    for _ in range(5):
        twin.start() if not twin.components.lease.holding else twin.run(Work(paths={PROVIDERS}))
    assert twin.providers() == [ORIGINAL]
    assert twin.components.retries.next_due() > twin.clock.now  # backing off
    twin.dirty.connection_changed(Connection.RESUMED)
    twin.settle()
    assert twin.providers() == [rewritten()]
