"""The fleet changes what watching costs, never what is decided: the same registry events on
the same hosts, with and without --fleet, leave the registry the same; and whatever anyone
writes into the sidecars' own coordination nodes adds no write to what the registry alone
justifies. On in-memory twins; tests/integration/test_fleet_trust.py does it on ZooKeeper."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.fleet.indexer import ELECTION, MEMBERS, WORK
from sidecar.loop.dirty import Work
from sidecar.model import Origin
from sidecar.records import records_parent
from sidecar.scope import LEASE_ROOT
from tests.twins import MemoryRegistry
from tests.unit.fleets import fleet, later, settle
from tests.unit.harness import PROVIDERS, Harness
from tests.unit.scenarios import url_name

pytestmark = pytest.mark.timeout(120)
HOSTS = 3  # hosts with a sidecar; host 3 runs none
STRANGER = "198.51.100.7"


@dataclass(frozen=True)
class Event:
    """One thing a provider or an operator does: ``host`` 0..3 (3 runs no sidecar)."""

    kind: str  # register, renew (expire and register again at once), persistent, expire, stop
    host: int
    app: int


events = st.builds(
    Event,
    st.sampled_from(["register", "register", "renew", "persistent", "expire", "stop"]),
    st.integers(0, HOSTS),
    st.integers(0, 2),
)


def _session(event: Event) -> int:
    return 0x2000 + 16 * event.host + event.app


def _address(host: int) -> str:
    return f"192.0.2.{host + 1}" if host < HOSTS else STRANGER


def happen(hosts: list[Harness], tree: MemoryRegistry, event: Event) -> None:
    """Apply one event to the registry, the servers' view and the engines, then let every
    sidecar act on what it was told."""
    said = hosts[0].origins.origins
    assert said is not None
    name = url_name("172.17.0.5", application=f"app{event.app}-on-{event.host}")
    path = f"{PROVIDERS}/{name}"
    session = _session(event)
    if event.kind == "register" and session not in said and path not in tree.nodes:
        said[session] = Origin(_address(event.host), "zk")
        tree.add(path, owner=session)
    elif event.kind == "renew" and said.pop(session, None) is not None:
        # The provider's session ends and it registers the same URL again in a new one
        # before anyone lists the path again.
        tree.expire(session)
        said[session + 0x1000] = Origin(_address(event.host), "zk")
        if path not in tree.nodes:
            tree.add(path, owner=session + 0x1000)
    elif event.kind == "persistent" and path not in tree.nodes:
        tree.add(path, owner=0)
    elif event.kind == "expire" and said.pop(session, None) is not None:
        tree.expire(session)
    elif event.kind == "stop" and event.host < HOSTS:
        host = hosts[event.host]
        stopped = set(host.engine.containers)
        host.engine.containers.clear()
        host.dirty.everything()
        host.run(Work(containers=stopped))
    settle(hosts)
    later(hosts)


def registry_of(tree: MemoryRegistry) -> dict[str, tuple[bytes, int]]:
    """What consumers see: each registration under the registry root, its data and owner."""
    return {p: (n.data, n.owner) for p, n in tree.nodes.items() if p.startswith("/dubbo/")}


def outcome(history: list[Event], together: bool) -> dict[str, tuple[bytes, int]]:
    """The registry after the events and a periodic resync (a sidecar that watches every
    path may act on an event sooner, prompted by another host's change on the same path)."""
    hosts, tree = fleet(HOSTS, together)
    for event in history:
        happen(hosts, tree, event)
    later(hosts, resync=True)
    return registry_of(tree)


@settings(max_examples=40, deadline=None)
@given(st.lists(events, max_size=8))
def test_the_same_events_leave_the_same_registry_with_and_without_the_fleet(
    history: list[Event],
) -> None:
    """Registrations of colliding container addresses on three hosts and one without a
    sidecar, persistent ones, providers gone, containers stopped: the fleet decides exactly
    what sidecars that each watch everything decide."""
    assert outcome(history, together=True) == outcome(history, together=False)


junk_data = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([
        b"{}", b"[]", b"null", b'{"paths": {"/dubbo/com.example.DemoService/providers": '
        b'["x", 1]}, "origins": {"2030": ["192.0.2.1", "zk"]}}',
        b'{"session": "2030", "hosts": ["192.0.2.1"], "containers": ["172.17.0.5"]}',
        b'{"session": "5001", "hosts": ["198.51.100.7"], "containers": []}',
    ]),
)  # fmt: skip
junk_names = st.sampled_from(["a", "n_", "n_0000000000", "n_0000000001", "n_9999999999",
                              "E0@h+host", "E1@h+host", "x+host", "0", "host"])  # fmt: skip
junk_parents = st.sampled_from([MEMBERS, ELECTION, WORK, records_parent("E0@h"),
                                f"{LEASE_ROOT}/E1@h"])  # fmt: skip
junk = st.lists(
    st.tuples(
        junk_parents, junk_names, junk_data, st.sampled_from([0, 0x6666, 0x2030]),
        st.booleans(),  # an ACL that refuses every writer
    ),
    max_size=6,
)  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(junk, st.lists(events, min_size=1, max_size=6), st.booleans())
def test_junk_in_coordination_nodes_adds_no_write(
    nodes: list[tuple[str, str, bytes, int, bool]], history: list[Event], early: bool
) -> None:
    """Anything anyone writes into members, ballots, work, records and leases, with any ACL,
    before the fleet starts or while it runs: the registry ends as the events alone leave it
    without the fleet, or short of it (never a write the registry does not justify); as it,
    when the junk came first and no ACL keeps a sidecar from writing what it must."""
    expected = outcome(history, together=False)
    tree = MemoryRegistry(session=0x5000)
    hosts: list[Harness] = []
    if not early:
        hosts, tree = fleet(HOSTS, tree=tree)
    for parent, name, data, owner, locked in nodes:
        tree.add(f"{parent}/{name}", data, owner=owner)
        if locked:
            tree.tree.unwritable.add(f"{parent}/{name}")
    if early:
        hosts, tree = fleet(HOSTS, tree=tree)
    settle(hosts)
    for event in history:
        happen(hosts, tree, event)
    later(hosts, resync=True)
    found = registry_of(tree)
    assert found.items() <= expected.items() | _originals(found)
    if early and not any(locked for *_, locked in nodes):
        assert found == expected


def _originals(found: dict[str, tuple[bytes, int]]) -> set[tuple[str, tuple[bytes, int]]]:
    """Registrations left as their providers wrote them (not yet rewritten: short of the
    expected registry, never against it)."""
    return {(p, v) for p, v in found.items() if v[1] >= 0x2000 and v[1] < 0x5000}
