"""Planner scenarios: what happens to each provider registration, and that a second pass is idle."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from sidecar.mapping import ContainerIndex
from sidecar.model import (
    Check,
    Create,
    Delete,
    Endpoint,
    PublishedPort,
    RegistryNode,
)
from sidecar.ownership import read_marker
from sidecar.plan import Action, Identity
from tests.unit.scenarios import (
    ENGINE,
    ME,
    MIRROR,
    PROVIDERS,
    apply,
    container,
    converge,
    only,
    plan_mirror,
    plan_providers,
    registration,
    url_name,
)


def test_published_container_port_is_rewritten_in_one_transaction() -> None:
    """A registration of a local container's published port is swapped, atomically, for the
    advertised host and host port; the new node records the original and the container."""
    original = registration(url_name("172.17.0.5"), data=b"172.17.0.5")
    decision = only(plan_providers([original], ContainerIndex([container()]), ME))

    assert decision.action is Action.REWRITE
    assert decision.advertised == Endpoint("192.0.2.10", 32768)
    assert decision.transaction is not None
    delete, create = decision.transaction.ops
    assert delete == Delete(original.path, 0)
    assert isinstance(create, Create)
    assert create.path == f"{PROVIDERS}/{url_name('192.0.2.10', 32768)}"
    marker = read_marker(create.data)
    assert marker is not None
    assert marker.original == original.name
    assert marker.container_endpoint == Endpoint("172.17.0.5", 20880)
    assert marker.container == "c1" * 32
    assert marker.engine == ENGINE


def test_specific_host_ip_of_a_binding_is_advertised_as_is() -> None:
    """A port published on one host address (-p 10.1.2.3::20880) advertises that address."""
    bound = container(bindings=(PublishedPort(20880, "10.1.2.3", 40000),))
    decision = only(
        plan_providers([registration(url_name("172.17.0.5"))], ContainerIndex([bound]), ME)
    )
    assert decision.advertised == Endpoint("10.1.2.3", 40000)


def test_ipv4_binding_is_preferred_when_families_have_different_ports() -> None:
    """Engine >= 20.10 may publish one port on different IPv4 and IPv6 host ports; an IPv4
    advertised host takes the IPv4 binding, an IPv6 one the IPv6 binding."""
    both = container(
        bindings=(PublishedPort(20880, "::", 40001), PublishedPort(20880, "0.0.0.0", 40000))
    )
    index = ContainerIndex([both])
    node = registration(url_name("172.17.0.5"))
    assert only(plan_providers([node], index, ME)).advertised == Endpoint("192.0.2.10", 40000)
    v6 = replace(ME, advertise_host="2001:db8::10")
    assert only(plan_providers([node], index, v6)).advertised == Endpoint("2001:db8::10", 40001)


def test_registrations_that_cannot_be_mapped_are_left_with_a_reason() -> None:
    """Unknown hosts, unpublished ports, shared addresses, malformed names, unknown protocols
    and host addresses are left alone, each with its own reason and no transaction."""
    twin_a = container("a" * 64, "172.17.0.9", name="twin-a")
    twin_b = container("b" * 64, "172.17.0.9", name="twin-b")
    index = ContainerIndex([container(), twin_a, twin_b])
    cases = {
        url_name("10.9.9.9"): ("not a container address on this Docker host", False),
        url_name("172.17.0.5", 20881): ("port 20881 of container provider is not published", True),
        url_name("172.17.0.9"): ("address 172.17.0.9 belongs to several containers", True),
        "not-a-url": ("malformed node name", True),
        url_name("172.17.0.5", protocol="memcached"): ("unknown protocol 'memcached'", True),
        url_name("192.0.2.10", 20880): ("registered with an address of this host", True),
    }
    decisions = plan_providers([registration(n) for n in cases], index, ME)
    for decision in decisions:
        reason, local = cases[decision.node.name]
        assert decision.action is Action.LEAVE
        assert decision.transaction is None
        assert decision.reason.startswith(reason), decision.reason
        assert decision.local is local


def test_second_pass_after_rewrite_changes_nothing() -> None:
    """Idempotency: once rewritten, the node is kept as managed by this sidecar."""
    after = converge([registration(url_name("172.17.0.5"))], ContainerIndex([container()]))
    assert [n.name for n in after] == [url_name("192.0.2.10", 32768)]
    assert after[0].owner == ME.session
    assert only(plan_providers(after, ContainerIndex([container()]), ME)).action is Action.KEEP


def test_restart_takes_over_rewrites_of_an_earlier_run_without_duplicates() -> None:
    """Nodes rewritten by an earlier run of this host's sidecar (another session) are re-created
    in the new session under the same name; originals registered since are rewritten."""
    index = ContainerIndex(
        [container(), container("d" * 64, "172.17.0.6", (PublishedPort(20880, "", 32769),))]
    )
    earlier = Identity(session=0x0999, engine=ENGINE, advertise_host=ME.advertise_host)
    rewritten = apply(
        [registration(url_name("172.17.0.5"))],
        plan_providers([registration(url_name("172.17.0.5"))], index, earlier),
        earlier.session or 0,
    )
    registry = [*rewritten, registration(url_name("172.17.0.6"))]

    decisions = plan_providers(registry, index, ME)
    assert sorted(d.action for d in decisions) == [Action.REWRITE, Action.UPDATE]
    after = converge(registry, index)
    assert [n.name for n in after] == [url_name("192.0.2.10", 32768), url_name("192.0.2.10", 32769)]
    assert {n.owner for n in after} == {ME.session}


def test_observer_counts_the_running_sidecars_nodes_as_managed() -> None:
    """`plan` (no session) shows another session's node of this engine as kept, not taken over."""
    index = ContainerIndex([container()])
    rewritten = converge([registration(url_name("172.17.0.5"))], index)
    observer = replace(ME, session=None)
    assert only(plan_providers(rewritten, index, observer)).action is Action.KEEP


def test_rewrites_of_another_engine_are_left_alone() -> None:
    """A node rewritten by another host's sidecar is never touched, even if addresses collide."""
    index = ContainerIndex([container()])
    theirs = apply(
        [registration(url_name("172.17.0.5"))],
        plan_providers(
            [registration(url_name("172.17.0.5"))], index, replace(ME, engine="ENGINE-B")
        ),
        0x3003,
    )
    decision = only(plan_providers(theirs, index, ME))
    assert decision.action is Action.LEAVE
    assert decision.local is False


def test_rewrite_is_removed_when_its_container_stops() -> None:
    """When the container is gone, its rewritten registration is deleted."""
    rewritten = converge([registration(url_name("172.17.0.5"))], ContainerIndex([container()]))
    decision = only(plan_providers(rewritten, ContainerIndex([]), ME))
    assert decision.action is Action.REMOVE
    assert decision.reason == f"container {'c1' * 6} is no longer running"
    assert apply(rewritten, [decision], ME.session or 0) == []


def test_rewrite_is_removed_when_its_address_now_belongs_to_another_container() -> None:
    """A new container that inherited the IP is not the process the rewrite pointed at."""
    rewritten = converge([registration(url_name("172.17.0.5"))], ContainerIndex([container()]))
    newcomer = container("e" * 64, name="newcomer")
    decision = only(plan_providers(rewritten, ContainerIndex([newcomer]), ME))
    assert decision.action is Action.REMOVE
    assert "newcomer" in decision.reason


def test_rewrite_follows_a_changed_host_port_and_advertise_host() -> None:
    """A new published port or advertised host re-points the node in one transaction."""
    rewritten = converge([registration(url_name("172.17.0.5"))], ContainerIndex([container()]))
    moved = ContainerIndex([container(bindings=(PublishedPort(20880, "0.0.0.0", 40000),))])
    decision = only(plan_providers(rewritten, moved, ME))
    assert decision.action is Action.UPDATE
    assert [n.name for n in converge(rewritten, moved)] == [url_name("192.0.2.10", 40000)]
    elsewhere = replace(ME, advertise_host="198.51.100.1")
    assert [n.name for n in converge(rewritten, moved, elsewhere)] == [
        url_name("198.51.100.1", 40000)
    ]


def test_original_registered_again_is_dropped_while_its_rewrite_stays() -> None:
    """A provider re-registering in the same session (a reconnect) next to its rewrite loses
    only the original; the transaction checks the rewrite still exists, so consumers never
    see neither."""
    index = ContainerIndex([container()])
    rewritten = converge([registration(url_name("172.17.0.5"))], index)
    registry = [*rewritten, registration(url_name("172.17.0.5"))]
    decisions = plan_providers(registry, index, ME)
    drop = next(d for d in decisions if d.action is Action.DROP_ORIGINAL)
    assert drop.transaction is not None
    assert isinstance(drop.transaction.ops[0], Check)
    assert converge(registry, index) == rewritten


def test_a_rewrite_follows_its_provider_into_a_new_session() -> None:
    """A provider re-registering in a new session next to its rewrite: in one transaction the
    original goes and the rewrite is made again naming the new session (its marker is what a
    restore later proves: the gone session would prove nothing)."""
    index = ContainerIndex([container()])
    [rewritten] = converge([registration(url_name("172.17.0.5"))], index)
    registry = [rewritten, registration(url_name("172.17.0.5"), owner=0x4004)]
    [after] = converge(registry, index)
    assert after.name == rewritten.name
    marker = read_marker(after.data)
    assert marker is not None
    assert marker.provider_session == 0x4004


def test_original_is_left_when_the_rewritten_name_belongs_to_someone_else() -> None:
    """If the advertised URL is already registered by another party, nothing is deleted."""
    index = ContainerIndex([container()])
    registry = [registration(url_name("172.17.0.5")), registration(url_name("192.0.2.10", 32768))]
    decisions = plan_providers(registry, index, ME)
    assert [d.action for d in decisions] == [Action.LEAVE, Action.LEAVE]


@given(
    st.lists(
        st.tuples(st.integers(2, 9), st.sampled_from([20880, 20881]), st.booleans()),
        max_size=12,
        unique_by=lambda t: (t[0], t[1]),
    ),
    st.sets(st.integers(2, 9)),
)
def test_any_registry_converges_in_one_pass(
    registered: list[tuple[int, int, bool]], running: set[int]
) -> None:
    """Whatever mix of originals and earlier rewrites the registry holds, one pass reaches a
    state where every registration of a running container is rewritten exactly once."""
    earlier = replace(ME, session=0x0777)
    everything = ContainerIndex(
        container(f"{i:064d}", f"172.17.0.{i}", (PublishedPort(20880, "0.0.0.0", 30000 + i),))
        for i in range(2, 10)
    )
    nodes = []
    for i, port, was_rewritten in registered:
        node = registration(url_name(f"172.17.0.{i}", port))
        nodes += (
            apply([node], plan_providers([node], everything, earlier), 0x0777)
            if was_rewritten
            else [node]
        )
    index = ContainerIndex(c for c in everything.by_id.values() if int(c.id) in running)

    after = converge(nodes, index)

    names = [n.name for n in after]
    assert len(names) == len(set(names))
    for i, port, was_rewritten in registered:
        original, rewritten = url_name(f"172.17.0.{i}", port), url_name("192.0.2.10", 30000 + i)
        if port == 20881:  # never published: untouched
            assert original in names
        elif i in running:
            assert rewritten in names
            assert original not in names
        elif was_rewritten:  # its container stopped: the rewrite is gone
            assert rewritten not in names
        else:  # not a running container's address: untouched
            assert original in names


def test_rewrites_that_vanished_with_the_sidecars_session_are_restored() -> None:
    """After the sidecar's own session expired its nodes are gone (and so are the originals):
    the remembered rewrites of still-running containers are re-created, others forgotten."""
    other = container("d" * 64, "172.17.0.6", (PublishedPort(20880, "", 32769),), "other")
    index = ContainerIndex([container(), other])
    registry = converge(
        [registration(url_name("172.17.0.5")), registration(url_name("172.17.0.6"))], index
    )
    remembered = registry
    only_first = ContainerIndex([container()])

    decisions = plan_providers([], only_first, ME, remembered)

    actions = {d.node.name: d.action for d in decisions}
    assert actions == {registry[0].name: Action.RESTORE, registry[1].name: Action.FORGET}
    restored = apply([], decisions, ME.session or 0)
    assert [n.name for n in restored] == [url_name("192.0.2.10", 32768)]
    assert read_marker(restored[0].data) == read_marker(registry[0].data)


def test_remembered_rewrite_is_not_restored_when_its_original_is_back() -> None:
    """If the provider re-registered meanwhile, the original is rewritten the normal way."""
    index = ContainerIndex([container()])
    remembered = converge([registration(url_name("172.17.0.5"))], index)
    registry = [registration(url_name("172.17.0.5"))]
    decisions = plan_providers(registry, index, ME, remembered)
    assert sorted(d.action for d in decisions) == sorted([Action.REWRITE, Action.FORGET])
    assert [n.name for n in apply(registry, decisions, 1)] == [url_name("192.0.2.10", 32768)]


def test_provider_restarted_inside_its_container_replaces_its_old_rewrite() -> None:
    """A new registration of the same service from the same container endpoint (new
    timestamp) replaces the earlier rewrite in the same transaction; memory does not bring
    the earlier one back; another service on that endpoint is untouched."""
    index = ContainerIndex([container()])
    old = converge(
        [
            registration(url_name("172.17.0.5", timestamp="1")),
            registration(url_name("172.17.0.5", timestamp="1", group="other")),
        ],
        index,
    )
    registry = [*old, registration(url_name("172.17.0.5", timestamp="2"))]

    decisions = plan_providers(registry, index, ME, remembered=old)
    rewrite = next(d for d in decisions if d.action is Action.REWRITE)
    assert rewrite.transaction is not None
    assert len([op for op in rewrite.transaction.ops if isinstance(op, Delete)]) == 2
    after = apply(registry, decisions, ME.session or 0)
    assert sorted(n.name for n in after) == sorted(
        [
            url_name("192.0.2.10", 32768, timestamp="2"),
            url_name("192.0.2.10", 32768, timestamp="1", group="other"),
        ]
    )
    assert [d for d in plan_providers(after, index, ME, remembered=old) if d.action.writes] == []


def test_mirror_mode_writes_under_the_mirror_root_and_leaves_the_original() -> None:
    """Mirror mode creates the rewritten node under the mirror path; the original stays; a
    second pass keeps it; when the original goes, so does the mirror."""
    index = ContainerIndex([container()])
    original = registration(url_name("172.17.0.5"))
    first = plan_mirror([original], [], index)
    [decision] = first
    assert decision.action is Action.REWRITE
    assert decision.transaction is not None
    assert [type(op) for op in decision.transaction.ops] == [Create]
    mirrored = apply([], first, ME.session or 0)
    assert [n.path for n in mirrored] == [f"{MIRROR}/{url_name('192.0.2.10', 32768)}"]

    again = plan_mirror([original], mirrored, index)
    assert sorted(d.action for d in again) == [Action.KEEP, Action.KEEP]

    gone = plan_mirror([], mirrored, index)
    assert [(d.action, d.reason) for d in gone] == [
        (Action.REMOVE, "its original registration is gone")
    ]
    stopped = plan_mirror([original], mirrored, ContainerIndex([]))
    assert [d.action for d in stopped] == [Action.LEAVE, Action.REMOVE]


def test_mirror_nodes_of_others_are_left_alone() -> None:
    """A node under the mirror path without this engine's marker is never touched."""
    stranger = RegistryNode(MIRROR, url_name("203.0.113.1", 1), b"", 0x5, 0)
    [decision] = plan_mirror([], [stranger], ContainerIndex([container()]))
    assert decision.action is Action.LEAVE
