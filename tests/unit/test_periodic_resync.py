"""The periodic resync plans again only what may plan differently now, and still finds what
changed without an event: a provider session gone, a refusal another path resolves."""

from __future__ import annotations

from sidecar import urls
from sidecar.loop.dirty import Work
from sidecar.model import Endpoint, Origin
from sidecar.sources.address import AdvertiseHost
from tests.twins import FixedOrigins
from tests.unit.harness import ORIGINAL, PROVIDERS, Harness, rewritten
from tests.unit.scenarios import url_name

HERE = Origin("192.0.2.10", "127.0.0.1")  # a session connected from this host
RESTARTED = url_name("172.17.0.5", timestamp="2")  # the provider's registration after a restart


def _periodic(twin: Harness) -> None:
    twin.clock.now += 60.0
    twin.dirty.periodic()
    twin.settle()


def _quiet_twin() -> Harness:
    twin = Harness(origins=FixedOrigins({0x2002: HERE}))
    twin.registry.add(f"{PROVIDERS}/{ORIGINAL}", owner=0x2002)
    twin.start()
    twin.settle()
    assert twin.providers() == [rewritten()]
    return twin


def test_a_quiet_host_costs_one_check_per_path_and_no_planning() -> None:
    """Nothing changed since the last pass: the periodic resync checks the host's path with
    one ``exists``, neither lists nor reads it, and writes nothing."""
    twin = _quiet_twin()
    _periodic(twin)
    twin.registry.reads.clear()
    before = {path: (n.version, n.cversion) for path, n in twin.registry.nodes.items()}
    _periodic(twin)
    assert [r for r in twin.registry.reads if PROVIDERS in r] == [f"stat {PROVIDERS}"]
    assert twin.registry.reads[f"stat {PROVIDERS}"] == 1
    assert {path: (n.version, n.cversion) for path, n in twin.registry.nodes.items()} == before


def test_a_rewrite_whose_provider_session_ended_meanwhile_is_removed() -> None:
    """A provider restarted in its container registers again (a new session, a new URL of
    the same service and endpoint) while its old session still lives: both are rewritten.
    When the old session ends, nothing in the registry changes (its original was replaced
    by the rewrite), yet the next periodic resync removes the old rewrite."""
    twin = _quiet_twin()
    twin.registry.add(f"{PROVIDERS}/{RESTARTED}", owner=0x2003)
    twin.origins.origins = {0x2002: HERE, 0x2003: HERE}
    twin.settle()
    _periodic(twin)
    restarted = urls.parse(RESTARTED).with_endpoint(Endpoint("192.0.2.10", 32768))
    assert sorted(twin.providers()) == sorted([rewritten(), restarted])
    twin.origins.origins = {0x2003: HERE}
    _periodic(twin)
    assert twin.providers() == [restarted]


def test_a_refusal_resolved_by_another_path_is_planned_again() -> None:
    """Without servers that say where sessions connect from, an endpoint two sessions
    register is refused. When the other session's registration (on another path) goes, the
    refused path itself has not changed, yet the next periodic resync rewrites it."""
    twin = Harness(origins=FixedOrigins(None))
    other = "/dubbo/com.example.OtherService/providers"
    twin.registry.add(f"{PROVIDERS}/{ORIGINAL}", owner=0x2002)
    twin.registry.add(f"{other}/{url_name('172.17.0.5')}", owner=0x2003)
    twin.start()
    twin.settle()
    _periodic(twin)
    assert twin.providers() == [ORIGINAL]
    twin.registry.expire(0x2003)
    twin.settle()
    _periodic(twin)
    assert twin.providers() == [rewritten()]


def test_a_new_address_whose_pass_failed_repoints_every_rewrite_later() -> None:
    """The pass after an address change fails (the connection drops mid-read): the rewrites
    are still re-pointed by a later pass, though none of their paths changed."""
    twin = _quiet_twin()
    twin.registry.failing_reads = 1
    twin.run(Work(new_address=AdvertiseHost("198.51.100.7", "--advertise-host")))
    assert twin.providers() == [rewritten()]
    _periodic(twin)
    twin.due()
    assert twin.providers() == [rewritten("198.51.100.7")]
