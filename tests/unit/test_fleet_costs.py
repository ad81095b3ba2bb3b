"""What a registration change costs the members of a fleet (--fleet): a member reads only
what could concern its own host and does not read again what its own write changed; the
indexer looks up only sessions an address cannot tell and writes no member's work that did
not change. A member still proves ownership by asking the servers itself."""

from __future__ import annotations

import pytest

from sidecar import urls
from sidecar.fleet.indexer import WORK
from sidecar.loop.dirty import Work
from sidecar.model import Container, Endpoint, PublishedPort
from tests.unit.fleets import fleet, provider_on, settle
from tests.unit.harness import ORIGINAL, PROVIDERS, Harness, rewritten
from tests.unit.scenarios import url_name

pytestmark = pytest.mark.timeout(60)
SESSION = 0x2003  # a provider on the first member that is not the indexer


def member_provider(hosts: list[Harness]) -> tuple[Harness, str]:
    """The first host that is not the indexer, with its provider's session known to the
    servers; and that host's address."""
    member = next(h for h in hosts if h.fleet and not h.fleet.indexer)
    return member, provider_on(hosts, hosts.index(member), SESSION)


def test_a_member_reads_no_data_of_other_hosts_registrations() -> None:
    """A path holds many registrations of hosts without a sidecar next to one of this
    member's provider: the member reads the data of its own provider's node only."""
    hosts, tree = fleet(3)
    for i in range(20):
        tree.add(f"{PROVIDERS}/{url_name(f'10.9.9.{i}')}", owner=0x7000 + i)
    member, address = member_provider(hosts)
    tree.add(f"{PROVIDERS}/{ORIGINAL}", owner=SESSION)
    settle(hosts)
    assert rewritten(address) in tree.children(PROVIDERS)
    got = {key for key in member.registry.reads if key.startswith(f"get {PROVIDERS}/")}
    assert got == {f"get {PROVIDERS}/{ORIGINAL}"}


def test_a_member_does_not_read_again_what_its_own_rewrite_changed() -> None:
    """The member's rewrite changes the path, the indexer publishes the member's work again:
    the member, finding the child version its own write left, lists the path only once."""
    hosts, tree = fleet(3)
    member, address = member_provider(hosts)
    tree.add(f"{PROVIDERS}/{ORIGINAL}", owner=SESSION)
    settle(hosts)
    assert tree.children(PROVIDERS) == [rewritten(address)]
    assert member.registry.reads[f"list {PROVIDERS}"] == 1


def test_a_change_by_someone_else_after_the_rewrite_is_read_again() -> None:
    """A newer registration of the member's container address appears after its rewrite
    (the child version moved past the member's own write): the member reads the path again
    and rewrites the newer one."""
    hosts, tree = fleet(3)
    member, address = member_provider(hosts)
    tree.add(f"{PROVIDERS}/{ORIGINAL}", owner=SESSION)
    settle(hosts)
    later = url_name("172.17.0.5", application="later")
    tree.add(f"{PROVIDERS}/{later}", owner=SESSION)
    settle(hosts)
    assert member.registry.reads[f"list {PROVIDERS}"] == 2
    assert tree.children(PROVIDERS) == [urls.parse(later).with_endpoint(Endpoint(address, 32768))]


def test_a_member_asks_the_servers_itself_before_it_rewrites() -> None:
    """The indexer asked the servers where the provider's session connects from, but what a
    coordination node says is never proof: the member asks the servers before it rewrites."""
    hosts, tree = fleet(3)
    member, address = member_provider(hosts)
    before = member.origins.fetches
    tree.add(f"{PROVIDERS}/{ORIGINAL}", owner=SESSION)
    settle(hosts)
    assert tree.children(PROVIDERS) == [rewritten(address)]
    assert member.origins.fetches > before


def test_the_indexer_looks_no_session_up_for_an_address_only_one_member_has() -> None:
    """A registration of one member's host address (host networking) needs no session
    looked up to be routed; one of the containers' shared address does."""
    hosts, tree = fleet(3)
    [indexer] = [h for h in hosts if h.fleet and h.fleet.indexer]
    own_address = url_name("192.0.2.2", port=32768, application="host-net")
    tree.add(f"{PROVIDERS}/{own_address}", owner=0x7001)
    tree.add(f"{PROVIDERS}/{ORIGINAL}", owner=0x7002)
    settle(hosts)
    assert indexer.registry.reads[f"stat {PROVIDERS}/{own_address}"] == 0
    assert indexer.registry.reads[f"stat {PROVIDERS}/{ORIGINAL}"] == 1


def test_members_whose_work_did_not_change_get_no_write() -> None:
    """A registration of the containers' shared address that turns out to be one member's:
    the other members' work nodes are not written (each was written once, on joining)."""
    hosts, tree = fleet(3)
    member, _ = member_provider(hosts)
    others = [h for h in hosts if h is not member]
    paths = [f"{WORK}/{h.fleet.member_id}" for h in others if h.fleet]
    before = [tree.nodes[p].version if p in tree.nodes else None for p in paths]
    tree.add(f"{PROVIDERS}/{ORIGINAL}", owner=SESSION)
    settle(hosts)
    assert None not in before
    assert [tree.nodes[p].version for p in paths] == before


def test_other_hosts_changes_on_a_path_do_not_make_a_member_read_it_again() -> None:
    """A registration of a host without a sidecar lands on the member's path (its child
    version moves, its digest for the member does not); then the member's work changes for
    another path: the member reads that path, not the first one again."""
    hosts, tree = fleet(3)
    member, _ = member_provider(hosts)
    tree.add(f"{PROVIDERS}/{ORIGINAL}", owner=SESSION)
    settle(hosts)
    tree.add(f"{PROVIDERS}/{url_name('10.9.9.9')}", owner=0x7001)
    other = "/dubbo/com.example.Other/providers"
    tree.add(f"{other}/{url_name('172.17.0.5', interface='com.example.Other')}", owner=SESSION)
    settle(hosts)
    assert member.registry.reads[f"list {other}"] == 1
    assert member.registry.reads[f"list {PROVIDERS}"] == 1


def test_a_container_that_starts_after_its_provider_registered_is_rewritten() -> None:
    """A registration of an address in the member's Docker network, before the container
    that takes it is known there (its event comes late): the member reads it all the same,
    and rewrites it once the container shows up."""
    hosts, tree = fleet(3)
    member, address = member_provider(hosts)
    tree.add(f"{PROVIDERS}/{ORIGINAL}", owner=SESSION)
    early = url_name("172.17.0.9", application="early")
    tree.add(f"{PROVIDERS}/{early}", owner=SESSION)
    settle(hosts)
    assert f"get {PROVIDERS}/{early}" in member.registry.reads
    late = Container("d".ljust(64, "0"), "late", "bridge", ("172.17.0.9",),
                     (PublishedPort(20880, "0.0.0.0", 32770),))  # fmt: skip
    member.engine.containers[late.id] = late
    member.run(Work(containers={late.id}))
    settle(hosts)
    assert urls.parse(early).with_endpoint(Endpoint(address, 32770)) in tree.children(PROVIDERS)


def test_the_indexers_host_plans_its_own_work_before_indexing_the_fleets_writes() -> None:
    """The indexer routes a registration to a member and one to its own host; the member's
    rewrite changes its path. The indexer's next pass rewrites its own host's registration
    first, and lists the path the member changed only in the pass after."""
    hosts, tree = fleet(3)
    [indexer] = [h for h in hosts if h.fleet and h.fleet.indexer]
    member, _ = member_provider(hosts)
    own_address = provider_on(hosts, hosts.index(indexer), 0x2004)
    other = "/dubbo/com.example.Other/providers"
    own = url_name("172.17.0.5", interface="com.example.Other")
    tree.add(f"{PROVIDERS}/{ORIGINAL}", owner=SESSION)
    tree.add(f"{other}/{own}", owner=0x2004)
    indexer.one_pass()  # indexes both, publishes both members' work
    member.settle()  # the member's rewrite fires the indexer's watch on PROVIDERS
    listed = indexer.registry.reads[f"list {PROVIDERS}"]
    indexer.one_pass()
    assert urls.parse(own).with_endpoint(Endpoint(own_address, 32768)) in tree.children(other)
    assert indexer.registry.reads[f"list {PROVIDERS}"] == listed
    indexer.one_pass()
    assert indexer.registry.reads[f"list {PROVIDERS}"] == listed + 1
    settle(hosts)  # the pass asked for is the last: the fleet comes to rest
