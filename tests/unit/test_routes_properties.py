"""Routing the fleet's work (sidecar/fleet/routes.py), as properties over any fleet and any
registry: who hears of a node, and that every change a member must act on reaches it."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from sidecar.fleet.routes import Facts, Member, Members, Routes

ADDRESSES = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "172.17.0.2", "172.17.0.3"]
FOREIGN = [900, 901]  # sessions of no member: providers, other clients
PATH = "/dubbo/com.example.Demo/providers"

_addresses = st.frozensets(st.sampled_from(ADDRESSES), max_size=3)


@st.composite
def fleets(draw: st.DrawFn) -> Members:
    count = draw(st.integers(min_value=1, max_value=4))
    return Members(
        Member(id=f"m{i}", session=100 + i, hosts=draw(_addresses), containers=draw(_addresses))
        for i in range(count)
    )


@st.composite
def facts(draw: st.DrawFn, members: Members) -> Facts:
    sessions = [m.session for m in members.by_id.values()]
    owner = draw(st.sampled_from([None, 0, *sessions, *FOREIGN]))
    # A node whose session is not looked up yet is routed by its address: it has one.
    host = draw(st.sampled_from([*([None] if owner is not None else []), *ADDRESSES]))
    return Facts(host=host, owner=owner, version=draw(st.integers(min_value=0, max_value=3)))


@st.composite
def registries(draw: st.DrawFn) -> tuple[Members, dict[str, Facts], dict[int, frozenset[str]]]:
    members = draw(fleets())
    names = draw(st.lists(st.text("abc", min_size=1, max_size=3), unique=True, max_size=6))
    nodes = {name: draw(facts(members)) for name in names}
    origins = {session: draw(_addresses) for session in FOREIGN}
    return members, nodes, origins


@given(members=fleets(), host=st.sampled_from(ADDRESSES))
def test_a_persistent_node_reaches_exactly_the_members_whose_containers_have_its_address(
    members: Members, host: str
) -> None:
    """A persistent node (no session to prove anything) is heard of by the members serving a
    container at its address, and by no member that merely has that address as a host
    address: a persistent registration of a host's own address is no container's."""
    concerned = members.concerned(Facts(host=host, owner=0), {})
    assert concerned == {m.id for m in members.by_id.values() if host in m.containers}


@given(registry=registries(), data=st.data())
def test_every_data_change_of_a_node_reaches_the_members_it_concerns(
    registry: tuple[Members, dict[str, Facts], dict[int, frozenset[str]]], data: st.DataObject
) -> None:
    """A node's data changing (its version: an instance updated in place) changes the work
    of every member it concerns, so each reads the path again; nobody else is told."""
    members, nodes, origins = registry
    if not nodes:
        return
    routes = Routes()
    routes.reroute(PATH, nodes, members, origins)
    before = {member: dict(paths) for member, paths in routes.work.items()}
    name = data.draw(st.sampled_from(sorted(nodes)))
    changed_nodes = {**nodes, name: replace(nodes[name], version=nodes[name].version + 1)}
    changed = routes.reroute(PATH, changed_nodes, members, origins)
    concerned = members.concerned(nodes[name], origins)
    assert changed == concerned
    for member in concerned:
        assert routes.work[member][PATH] != before[member][PATH]


@given(registry=registries())
def test_routing_the_same_registry_again_changes_nobodys_work(
    registry: tuple[Members, dict[str, Facts], dict[int, frozenset[str]]],
) -> None:
    """Routing is idempotent: the same nodes routed again tell no member anything."""
    members, nodes, origins = registry
    routes = Routes()
    routes.reroute(PATH, nodes, members, origins)
    assert routes.reroute(PATH, dict(nodes), members, origins) == set()


@given(registry=registries())
def test_a_member_holds_a_path_exactly_while_some_node_there_concerns_it(
    registry: tuple[Members, dict[str, Facts], dict[int, frozenset[str]]],
) -> None:
    """A member's work names the path while a node there concerns it; once the path is
    empty, every member that held it is told and holds it no more."""
    members, nodes, origins = registry
    routes = Routes()
    routes.reroute(PATH, nodes, members, origins)
    expected = set().union(*(members.concerned(f, origins) for f in nodes.values()))
    assert {m for m, paths in routes.work.items() if PATH in paths} == expected
    assert routes.reroute(PATH, {}, members, origins) == expected
    assert not any(PATH in paths for paths in routes.work.values())
