"""What the sidecar's own coordination nodes can make it do: nothing that moves traffic.
Where a session connects from is proved by the servers at decision time, in a fleet too; a
work node only says where to look, a record only what to look for. On in-memory twins."""

from __future__ import annotations

import json

import pytest

from sidecar import records
from sidecar.fleet.indexer import WORK
from sidecar.fleet.routes import where_from
from sidecar.loop.dirty import Work
from sidecar.model import Origin
from tests.unit.fleets import fleet, settle
from tests.unit.harness import ORIGINAL, PROVIDERS, Harness, rewritten

pytestmark = pytest.mark.timeout(60)
ELSEWHERE = 0x3003  # a provider on a host that runs no sidecar


def test_a_forged_work_node_never_proves_a_session_local() -> None:
    """Anyone writes host 0's work node, naming a path and saying another host's provider
    session connects from host 0: host 0 reads the path (work says where to look) but asks
    the servers, which say otherwise, and leaves the registration alone."""
    hosts, tree = fleet(3)
    said = hosts[0].origins.origins
    assert said is not None
    said[ELSEWHERE] = Origin("198.51.100.7", "zk")
    tree.add(f"{PROVIDERS}/{ORIGINAL}", owner=ELSEWHERE)
    settle(hosts)
    member = hosts[0].fleet.member_id if hosts[0].fleet else ""
    forged = {"paths": {PROVIDERS: ["forged", 99]},
              "origins": {f"{ELSEWHERE:x}": ["192.0.2.1", "zk"]}}  # fmt: skip
    tree.set_data(f"{WORK}/{member}", json.dumps(forged).encode())
    settle(hosts)
    assert f"list {PROVIDERS}" in hosts[0].registry.reads  # it did look
    assert tree.children(PROVIDERS) == [ORIGINAL]


def test_loopback_origins_route_to_the_servers_host() -> None:
    """A server reports a client on its own host by a loopback or link-local address: the
    indexer routes by the server's address instead, or by its own host's where it reached
    that server by loopback as well."""
    assert where_from(Origin("127.0.0.1", "10.0.0.5"), "10.0.0.9") == {"127.0.0.1", "10.0.0.5"}
    assert where_from(Origin("fe80::1", "10.0.0.5"), "10.0.0.9") == {"fe80::1", "10.0.0.5"}
    assert where_from(Origin("127.0.0.1", "127.0.1.1"), "10.0.0.9") == {"127.0.0.1", "10.0.0.9"}
    assert where_from(Origin("::1", "::1"), None) == {"::1"}
    assert where_from(Origin("172.17.0.5", "127.0.1.1"), "10.0.0.9") == {"172.17.0.5"}


def _restarted_past_its_session(
    origins: dict[int, Origin] | None, unanswered: tuple[str, ...] = ()
) -> Harness:
    """A sidecar that rewrote the registration, killed, back after its session expired (the
    rewrite went with it; its record stays), with the servers now saying ``origins``
    (``unanswered``: servers that did not)."""
    first = Harness()
    first.origins.origins = {0x2002: Origin("192.0.2.10", "zk")}
    first.registry.add(f"{PROVIDERS}/{ORIGINAL}")
    first.start()
    assert first.providers() == [rewritten()]
    first.registry.expire(first.registry.session)
    second = Harness(registry=first.registry.another(0x5001))
    second.origins.origins = origins
    second.origins.unanswered = unanswered
    second.start()
    return second


def test_a_record_restores_only_what_the_servers_prove_local() -> None:
    """The record of a rewrite names its provider session: the restart restores it only while
    the servers say that session connects from this host."""
    here = _restarted_past_its_session({0x2002: Origin("192.0.2.10", "zk")})
    assert here.providers() == [rewritten()]
    elsewhere = _restarted_past_its_session({0x2002: Origin("198.51.100.7", "zk")})
    assert elsewhere.providers() == []
    assert elsewhere.registry.children(records.records_parent("TWIN@host"))  # left as found


def test_a_record_whose_provider_session_is_gone_is_dropped() -> None:
    """Every server answers and none knows the provider's session: nothing is restored and
    the record goes."""
    gone = _restarted_past_its_session({})
    assert gone.providers() == []
    assert gone.registry.children(records.records_parent("TWIN@host")) == []


def test_a_record_waits_while_not_every_server_answers() -> None:
    """A server does not answer and the others do not know the session: nothing is restored
    yet, the record stays, and the restore follows once the servers prove it."""
    waiting = _restarted_past_its_session({}, ("zk2:2181 did not answer",))
    assert waiting.providers() == []
    assert waiting.registry.children(records.records_parent("TWIN@host"))
    waiting.origins.origins = {0x2002: Origin("192.0.2.10", "zk")}
    waiting.origins.unanswered = ()
    waiting.clock.now += 10
    waiting.run(Work())
    assert waiting.providers() == [rewritten()]


@pytest.mark.parametrize("seen", ["fe80::1", "169.254.7.7"])
def test_a_link_local_address_proves_this_host_only_to_a_server_here(seen: str) -> None:
    """This host has a link-local address, which other links reuse: a session a server on
    another host sees coming from it is not proven this host's."""
    twin = Harness()
    twin.components.inventory._host_addresses = lambda: {"192.0.2.10", "127.0.0.1", seen}
    twin.origins.origins = {0x2002: Origin(seen, "zk")}
    twin.registry.add(f"{PROVIDERS}/{ORIGINAL}")
    twin.start()
    assert twin.providers() == [ORIGINAL]
    # The provider comes back in a new session, to a server at that very address.
    twin.registry.expire(0x2002)
    twin.origins.origins = {0x2003: Origin(seen, seen)}
    twin.registry.add(f"{PROVIDERS}/{ORIGINAL}", owner=0x2003)
    twin.clock.now += 2
    twin.settle()
    assert twin.providers() == [rewritten()]
