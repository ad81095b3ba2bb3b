"""A fleet of sidecars (--fleet) on one in-memory registry: one elected indexer watches it all,
each member hears only of what concerns its own host, and the cost of a registry change does
not grow with the number of hosts. tests/integration/test_fleet.py does it on ZooKeeper, and
bench/run --fleet measures it."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from sidecar import urls
from sidecar.fleet.indexer import ELECTION, MEMBERS, WORK
from sidecar.fleet.routes import Facts, Member, Members, Routes
from sidecar.loop.dirty import Work
from sidecar.loop.status import fleet_now
from sidecar.model import Endpoint, Origin
from sidecar.periodic_sweep import SWEEP_RESYNCS
from tests.twins import MemoryEngine, MemoryRegistry
from tests.unit.fleets import (
    PROVIDER,
    fleet,
    indexer_dies,
    later,
    provider_on,
    settle,
    work_of,
)
from tests.unit.harness import ORIGINAL, PROVIDERS, Harness, rewritten
from tests.unit.scenarios import url_name


def test_each_host_hears_only_of_its_own_provider() -> None:
    """Three hosts' containers share an address; the provider's session comes from host 0:
    only host 0's work names the path, and only host 0 rewrites it."""
    hosts, tree = fleet(3)
    tree.add(f"{PROVIDERS}/{ORIGINAL}", owner=PROVIDER)
    settle(hosts)
    assert PROVIDERS in work_of(tree, hosts[0])
    assert [PROVIDERS in work_of(tree, h) for h in hosts[1:]] == [False, False]
    assert tree.children(PROVIDERS) == [rewritten("192.0.2.1")]


def test_only_the_indexer_watches_the_registry() -> None:
    """Members other than the elected indexer hold no watch on any registry path."""
    hosts, tree = fleet(3)
    tree.add(f"{PROVIDERS}/{ORIGINAL}", owner=PROVIDER)
    settle(hosts)
    indexers = [h for h in hosts if h.fleet and h.fleet.indexer]
    assert len(indexers) == 1
    for host in hosts:
        if host in indexers:
            continue
        watched = host.registry._child_watches | host.registry._data_watches
        assert not [p for p in watched if p.startswith("/dubbo/")], watched


def test_a_change_elsewhere_costs_the_same_with_more_hosts() -> None:
    """A registration of a host that runs no sidecar: the requests it costs the ensemble do
    not depend on how many sidecars there are."""
    costs = []
    for size in (1, 4):
        hosts, tree = fleet(size)
        before = sum(c.requests for c in tree.tree.clients)
        tree.add(f"{PROVIDERS}/{url_name('10.9.9.9')}", owner=0x7777)
        settle(hosts)
        costs.append(sum(c.requests for c in tree.tree.clients) - before)
    assert costs[1] == costs[0]


def test_when_the_indexer_dies_another_member_takes_over() -> None:
    """The indexer's session ends: the next member is elected, rebuilds, and routes a new
    registration of host 1's provider to host 1, which rewrites it."""
    hosts, tree = fleet(3)
    rest = indexer_dies(hosts, tree)
    assert sum(1 for h in rest if h.fleet and h.fleet.indexer) == 1
    provider_on(hosts, 1, 0x2003)
    tree.add(f"{PROVIDERS}/{ORIGINAL}", owner=0x2003)
    later(rest)  # the servers' answer of this same instant did not know the new session
    assert [PROVIDERS in work_of(tree, h) for h in rest] == [True, False]
    assert tree.children(PROVIDERS) == [rewritten("192.0.2.2")]


addresses = st.sampled_from(["10.0.0.1", "10.0.0.2", "172.17.0.5", "192.0.2.1", "192.0.2.2"])


@given(
    nodes=st.dictionaries(
        st.text(min_size=1, max_size=5),
        st.tuples(st.none() | addresses, st.none() | st.sampled_from([0, 1, 2, 3, 0x99])),
        max_size=8,
    )
)
def test_a_route_changes_only_for_the_members_a_change_concerns(
    nodes: dict[str, tuple[str | None, int | None]],
) -> None:
    """Whatever the nodes, adding one that concerns member A changes A's route only."""
    members = Members([
        Member("a", 1, frozenset({"192.0.2.1"}), frozenset({"172.17.0.5"})),
        Member("b", 2, frozenset({"192.0.2.2"}), frozenset({"172.17.0.5"})),
        Member("c", 3, frozenset({"192.0.2.3"}), frozenset({"10.0.0.1"})),
    ])  # fmt: skip
    origins = {0x99: frozenset({"192.0.2.1"})}
    facts = {name: Facts(host, owner) for name, (host, owner) in nodes.items()}
    routes = Routes()
    routes.reroute("/p", facts, members, origins)
    facts["new-one"] = Facts("172.17.0.5", 0x99)  # host a's session, a colliding address
    assert routes.reroute("/p", facts, members, origins) <= {"a"}
    assert "/p" in routes.work["a"]


def test_a_later_registration_at_a_known_path_reaches_its_own_host() -> None:
    """Once a path is indexed, a registration added there by another host's provider (the
    path's watch fires on the indexer) is routed to that host, which rewrites it."""
    hosts, tree = fleet(3)
    tree.add(f"{PROVIDERS}/{ORIGINAL}", owner=PROVIDER)
    settle(hosts)
    provider_on(hosts, 1, 0x2003)
    later = url_name("172.17.0.5", application="later")
    tree.add(f"{PROVIDERS}/{later}", owner=0x2003)
    settle(hosts)
    assert [PROVIDERS in work_of(tree, h) for h in hosts] == [True, True, False]
    assert urls.parse(later).with_endpoint(Endpoint("192.0.2.2", 32768)) in tree.children(PROVIDERS)


def test_the_indexer_s_sweep_finds_what_a_lost_watch_hid() -> None:
    """The indexer's watches are lost (a change fires nothing): within SWEEP_RESYNCS
    periodic resyncs its sweep lists the path again and routes host 1's new registration
    there to host 1."""
    hosts, tree = fleet(2)
    tree.add(f"{PROVIDERS}/{ORIGINAL}", owner=PROVIDER)
    settle(hosts)
    [indexer] = [h for h in hosts if h.fleet and h.fleet.indexer]
    indexer.registry._child_watches.clear()  # as a lost notification would
    provider_on(hosts, 1, 0x2003)  # host 1's provider
    tree.add(f"{PROVIDERS}/{url_name('172.17.0.5', application='later')}", owner=0x2003)
    settle(hosts)
    assert PROVIDERS not in work_of(tree, hosts[1])
    for _ in range(SWEEP_RESYNCS):
        indexer.run(Work(local=True))
        settle(hosts)
    assert PROVIDERS in work_of(tree, hosts[1])


def test_a_member_s_status_figures_cost_the_same_with_more_hosts() -> None:
    """A member's node changes only in what ``status --fleet`` shows (its counts), as it
    does on every rewrite: the requests that costs do not depend on how many members there
    are (the indexer reads that one member node, and routes nothing again)."""
    costs = []
    for size in (2, 6):
        hosts, tree = fleet(size)
        member = hosts[1].fleet.member_path if hosts[1].fleet else ""
        doc = json.loads(tree.nodes[member].data)
        before = sum(c.requests for c in tree.tree.clients)
        tree.set_data(member, json.dumps(doc | {"managed": 7}).encode())
        settle(hosts)
        costs.append(sum(c.requests for c in tree.tree.clients) - before)
    assert costs[1] == costs[0]


def test_an_indexer_on_a_new_session_indexes_every_path_again() -> None:
    """The indexer reads everything again after a full resync (a new session): every path
    is indexed as before (the work units it reports), and later changes route as before."""
    hosts, tree = fleet(3)
    tree.add(f"{PROVIDERS}/{ORIGINAL}", owner=PROVIDER)
    settle(hosts)
    [indexer] = [h for h in hosts if h.fleet and h.fleet.indexer]
    assert indexer.fleet
    assert indexer.fleet.indexer
    units = indexer.fleet.indexer.units
    indexer.run(Work(full=True))
    settle(hosts)
    assert units > 0
    assert indexer.fleet.indexer.units == units
    assert [PROVIDERS in work_of(tree, h) for h in hosts] == [True, False, False]


def test_a_sidecar_restarted_within_its_session_keeps_its_place_in_the_election() -> None:
    """The indexer's process restarts and resumes its session (within the session timeout):
    its earlier ballot lives on with the session, and the new process takes it as its own,
    so the fleet keeps an indexer and a new registration of host 1 is still rewritten."""
    hosts, tree = fleet(3)
    [indexer] = [h for h in hosts if h.fleet and h.fleet.indexer]
    i = hosts.index(indexer)
    container = indexer.engine.running_containers()[0]
    restarted = Harness(
        registry=tree.another(indexer.registry.session), origins=indexer.origins,
        engine=MemoryEngine({container.id: container}, identity=f"E{i}@h"),
        options={"fleet": True}, engine_id=f"E{i}@h", host=f"192.0.2.{i + 1}",
    )  # fmt: skip
    restarted.start()
    now = [restarted if h is indexer else h for h in hosts]
    settle(now)
    assert sum(1 for h in now if h.fleet and h.fleet.indexer) == 1
    provider_on(hosts, 1, 0x2003)
    tree.add(f"{PROVIDERS}/{ORIGINAL}", owner=0x2003)
    later(now)  # the servers' answer of this same instant did not know the new session
    assert tree.children(PROVIDERS) == [rewritten("192.0.2.2")]


def test_a_node_created_again_between_two_listings_is_looked_up_again() -> None:
    """A host without a sidecar registers the shared container address; before the indexer
    lists the path again, that node is deleted and host 1's provider creates one of the
    same name: the indexer looks its session up again and routes it to host 1, which
    rewrites it."""
    hosts, tree = fleet(3)
    said = hosts[0].origins.origins
    assert said is not None
    said[0x3003] = Origin("198.51.100.7", "zk")
    tree.add(f"{PROVIDERS}/{ORIGINAL}", owner=0x3003)
    settle(hosts)
    provider_on(hosts, 1, 0x2003)
    tree.remove(f"{PROVIDERS}/{ORIGINAL}")
    tree.add(f"{PROVIDERS}/{ORIGINAL}", owner=0x2003)
    settle(hosts)
    assert tree.children(PROVIDERS) == [rewritten("192.0.2.2")]


JUNK = {
    f"{ELECTION}/a": (b"", 0),  # sorts before every ballot
    f"{ELECTION}/n_0000000000": (b"E9@h+host", 0),  # a ballot's name, but persistent
    f"{ELECTION}/n_0000000001": (b"nobody", 0x6666),  # a live session that is no member
    f"{MEMBERS}/E9@h+host": (b'{"session": "6666", "hosts": [], "containers": []}', 0),
    f"{MEMBERS}/E8@h+host": (b"{", 0x6667),
    f"{WORK}/E9@h+host": (b"[]", 0),
}


def test_junk_in_every_coordination_path_neither_jams_the_election_nor_counts() -> None:
    """Nodes anyone wrote into the election, members and work paths: they are ignored and
    reported once each; the indexer dies and the next member is elected and routes host 1's
    new registration to host 1; status --fleet lists the live members and the junk."""
    tree = MemoryRegistry(session=0x5000)
    for path, (data, owner) in JUNK.items():
        tree.add(path, data, owner=owner)
    with capture_logs() as logs:
        hosts, tree = fleet(3, tree=tree)
        rest = indexer_dies(hosts, tree)
    assert sum(1 for h in rest if h.fleet and h.fleet.indexer) == 1
    provider_on(hosts, 1, 0x2003)
    tree.add(f"{PROVIDERS}/{ORIGINAL}", owner=0x2003)
    settle(rest)
    assert tree.children(PROVIDERS) == [rewritten("192.0.2.2")]
    reported = {e["node"] for e in logs if e["event"] == "fleet_node_ignored"}
    assert reported == {p for p in JUNK if not p.startswith(WORK)}
    with capture_logs() as logs:
        later(rest, resync=True)
    assert not [e for e in logs if e["event"] == "fleet_node_ignored"]  # said once
    rows, ignored = fleet_now(tree)
    assert len(rows) == 2
    assert sum(r.indexer for r in rows) == 1
    assert set(ignored) == {p for p in JUNK if not p.startswith(WORK)}


def test_a_work_node_no_one_may_write_holds_back_no_other_member() -> None:
    """A client makes itself a member (an ephemeral member node in its own session) whose
    work node refuses every writer: the indexer reports it once, tries it again later each
    time it fails, and publishes every other member's work: host 1's new registration is
    rewritten."""
    tree = MemoryRegistry(session=0x5000)
    doc = {"session": "6666", "hosts": ["192.0.2.99"], "containers": ["172.17.0.5"]}
    tree.add(f"{MEMBERS}/E9@h+host", json.dumps(doc).encode(), owner=0x6666)
    tree.add(f"{WORK}/E9@h+host", b"{}", owner=0)
    tree.tree.unwritable.add(f"{WORK}/E9@h+host")
    with capture_logs() as logs:
        hosts, tree = fleet(3, tree=tree)
        provider_on(hosts, 1, 0x2003)
        tree.add(f"{PROVIDERS}/{ORIGINAL}", owner=0x2003)
        settle(hosts)
        assert tree.children(PROVIDERS) == [rewritten("192.0.2.2")]
        [indexer] = [h for h in hosts if h.fleet and h.fleet.indexer]
        assert indexer.fleet is not None
        first = indexer.fleet.next_deadline() - indexer.clock.now
        assert 0 < first < float("inf")
        later(hosts, seconds=first)  # due: fails again, waits twice as long
        assert indexer.fleet.next_deadline() - indexer.clock.now == 2 * first
    unwritable = [e for e in logs if e["event"] == "fleet_work_unwritable"]
    assert [e["node"] for e in unwritable] == [f"{WORK}/E9@h+host"]
    assert indexer.components.metrics.fleet.unwritable._value.get() == 1


def test_a_member_whose_work_outgrows_a_node_gets_it_in_parts() -> None:
    """Host 1's providers register forty interfaces: its work is larger than a work node
    may be (half the servers' jute.maxbuffer, here 2 KiB), so it comes in several nodes,
    and host 1 rewrites every registration."""
    hosts, tree = fleet(3, jute_maxbuffer=4096)
    provider_on(hosts, 1, 0x2003)
    interfaces = [f"com.example.Service{i:02d}" for i in range(40)]
    for interface in interfaces:
        name = url_name("172.17.0.5", interface=interface)
        tree.add(f"/dubbo/{interface}/providers/{name}", owner=0x2003)
    settle(hosts)
    member = hosts[1].fleet.member_id if hosts[1].fleet else ""
    parts = [p for p in tree.nodes if p.startswith(f"{WORK}/{member}/")]
    assert len(parts) >= 1
    assert all(len(tree.nodes[p].data) <= 2048 for p in [f"{WORK}/{member}", *parts])
    assert len(work_of(tree, hosts[1])) == 40
    for interface in interfaces:
        [name] = tree.children(f"/dubbo/{interface}/providers")
        assert "192.0.2.2%3A32768" in name
