"""Planner scenarios about proof: which sessions the servers show connecting from this host,
who claims an endpoint, and what is refused or kept while proof is missing."""

from __future__ import annotations

from dataclasses import replace

from sidecar.mapping import ContainerIndex
from sidecar.model import (
    Endpoint,
    Origin,
    Origins,
    PublishedPort,
)
from sidecar.ownership import LocalAddresses, Ownership
from sidecar.plan import Action, PathView, claims_in
from sidecar.plan import plan_path as plan_scope
from tests.unit.scenarios import (
    ME,
    MIRROR,
    MIRROR_ME,
    PROVIDER_SESSION,
    PROVIDERS,
    apply,
    container,
    converge,
    plan_mirror,
    plan_providers,
    registration,
    url_name,
)

LOCAL_SESSION, FOREIGN_SESSION = 0x2002, 0x3003


def test_with_proof_only_sessions_connecting_from_this_host_are_rewritten() -> None:
    """When the servers tell where sessions connect from, a registration of a local container
    endpoint by a session from another host is left alone, while the local one is rewritten;
    persistent nodes and sessions the servers do not know are not rewritten either."""
    index = ContainerIndex([container()])
    owners = Ownership(
        Origins(
            {
                LOCAL_SESSION: Origin("172.17.0.5", "127.0.0.1"),
                FOREIGN_SESSION: Origin("127.0.0.2", "127.0.0.1"),
            }
        ),
        LocalAddresses(frozenset(), frozenset({"127.0.0.1"}), frozenset({"172.17.0.5"})),
        {Endpoint("172.17.0.5", 20880): {LOCAL_SESSION, FOREIGN_SESSION}},
    )
    nodes = [
        registration(url_name("172.17.0.5", application="local"), owner=LOCAL_SESSION),
        registration(url_name("172.17.0.5", application="foreign"), owner=FOREIGN_SESSION),
        registration(url_name("172.17.0.5", application="persistent"), owner=0),
        registration(url_name("172.17.0.5", application="unknown"), owner=0x4004),
    ]
    decisions = {d.node.name: d for d in plan_providers(nodes, index, ME, owners=owners)}
    assert decisions[nodes[0].name].action is Action.REWRITE
    foreign = decisions[nodes[1].name]
    assert (foreign.action, foreign.reason) == (
        Action.LEAVE,
        f"registered by session 0x{FOREIGN_SESSION:x} from 127.0.0.2 (as server 127.0.0.1 sees "
        "it), "
        "not from this host",
    )
    assert decisions[nodes[2].name].action is Action.LEAVE
    unknown = decisions[nodes[3].name]
    assert unknown.action is Action.LEAVE
    assert unknown.provisional


def test_without_proof_endpoints_claimed_by_several_sessions_are_refused() -> None:
    """Fallback when the servers do not tell: an endpoint registered by two sessions is
    ambiguous (container addresses repeat across hosts) and left alone; a single claim is
    rewritten."""
    index = ContainerIndex([container()])
    claims = {Endpoint("172.17.0.5", 20880): {LOCAL_SESSION, FOREIGN_SESSION}}
    owners = Ownership(None, LocalAddresses(frozenset()), claims)
    node = registration(url_name("172.17.0.5"), owner=LOCAL_SESSION)
    [decision] = plan_providers([node], index, ME, owners=owners)
    assert decision.action is Action.LEAVE
    assert "registered by 2 ZooKeeper sessions" in decision.reason
    single = Ownership(
        None, LocalAddresses(frozenset()), {Endpoint("172.17.0.5", 20880): {LOCAL_SESSION}}
    )
    assert plan_providers([node], index, ME, owners=single)[0].action is Action.REWRITE


def test_claims_count_owners_and_the_provider_sessions_recorded_in_rewrites() -> None:
    """An original claims its endpoint for its owner; a rewrite claims its container endpoint
    for the provider session that registered the original; malformed names claim nothing."""
    index = ContainerIndex([container()])
    rewritten = converge([registration(url_name("172.17.0.5"))], index)
    nodes = [*rewritten, registration("garbage"), registration(url_name("10.0.0.9"), owner=7)]
    assert claims_in(PathView(PROVIDERS, nodes)) == {
        Endpoint("10.0.0.9", 20880): {7},
        Endpoint("172.17.0.5", 20880): {PROVIDER_SESSION},
    }


def test_another_hosts_registration_of_a_rewritten_endpoint_is_refused_without_proof() -> None:
    """Fallback mode: after this host's provider was rewritten, another host's replica
    registering the same container address is ambiguous, so it is neither rewritten nor
    allowed to replace the existing rewrite; persistent nodes are refused too."""
    index = ContainerIndex([container()])
    rewritten = converge([registration(url_name("172.17.0.5"))], index)
    replica = registration(url_name("172.17.0.5", application="replica"), owner=0x9009)
    persistent = registration(url_name("172.17.0.5", application="persistent"), owner=0)
    registry = [*rewritten, replica, persistent]
    unproven = Ownership(
        None, LocalAddresses(frozenset()), claims_in(PathView(PROVIDERS, registry))
    )
    decisions = plan_providers(registry, index, ME, owners=unproven)
    assert [d for d in decisions if d.action.writes] == []
    assert {d.node.name: d.action for d in decisions}[rewritten[0].name] is Action.KEEP


def test_rewrite_of_a_still_connected_session_is_not_replaced_by_another_session() -> None:
    """Only a re-registration by the same session, or one after the earlier session is gone,
    replaces an earlier rewrite of the same service and endpoint; two live sessions keep
    one rewrite each."""
    index = ContainerIndex([container()])
    first = converge([registration(url_name("172.17.0.5", timestamp="1"), owner=0x11)], index)
    registry = [*first, registration(url_name("172.17.0.5", timestamp="2"), owner=0x22)]
    here = LocalAddresses(frozenset({"172.17.0.5"}))
    alive = {0x11: Origin("172.17.0.5", "zk"), 0x22: Origin("172.17.0.5", "zk")}
    both_alive = Ownership(Origins(alive), here, {})
    after = apply(registry, plan_providers(registry, index, ME, owners=both_alive), 1)
    assert sorted(n.name for n in after) == sorted(
        [url_name("192.0.2.10", 32768, timestamp="1"), url_name("192.0.2.10", 32768, timestamp="2")]
    )
    first_gone = Ownership(Origins({0x22: Origin("172.17.0.5", "zk")}), here, {})
    after = apply(registry, plan_providers(registry, index, ME, owners=first_gone), 1)
    assert [n.name for n in after] == [url_name("192.0.2.10", 32768, timestamp="2")]


def test_bindings_other_hosts_cannot_use_are_not_advertised() -> None:
    """A port published only on loopback, or on all addresses of the other family only
    (whose host port Docker picks independently), is reported instead of advertised."""
    node = registration(url_name("172.17.0.5"))
    loopback = container(bindings=(PublishedPort(20880, "127.0.0.1", 20880),))
    [decision] = plan_providers([node], ContainerIndex([loopback]), ME)
    assert decision.action is Action.LEAVE
    assert "published only on 127.0.0.1:20880" in decision.reason
    ipv6_only = container(bindings=(PublishedPort(20880, "::", 32770),))
    [decision] = plan_providers([node], ContainerIndex([ipv6_only]), ME)
    assert decision.action is Action.LEAVE
    v6 = replace(ME, advertise_host="2001:db8::10")
    [decision] = plan_providers([node], ContainerIndex([ipv6_only]), v6)
    assert decision.advertised == Endpoint("2001:db8::10", 32770)


def test_mirror_is_kept_while_proof_is_missing_for_a_moment() -> None:
    """A mirror proven before is kept (not removed) while its session is briefly unknown to
    the servers; the decision asks to plan again."""
    index = ContainerIndex([container()])
    original = registration(url_name("172.17.0.5"), owner=LOCAL_SESSION)
    mirrored = apply([], plan_mirror([original], [], index), ME.session or 0)
    unknown = Ownership(Origins({}), LocalAddresses(frozenset({"172.17.0.5"})), {})
    decisions = plan_scope(
        PathView(PROVIDERS, [original], (), MIRROR, mirrored), index, MIRROR_ME, unknown
    )
    assert [d.action for d in decisions] == [Action.KEEP, Action.KEEP]
    assert decisions[0].provisional


def test_rewrite_of_a_gone_session_is_removed_once_a_newer_one_serves() -> None:
    """Two live sessions had one rewrite each; when the earlier session ends, its rewrite is
    removed and the newer one stays."""
    index = ContainerIndex([container()])
    here = LocalAddresses(frozenset({"172.17.0.5"}))
    alive = {0x11: Origin("172.17.0.5", "zk"), 0x22: Origin("172.17.0.5", "zk")}
    nodes = [
        registration(url_name("172.17.0.5", timestamp="1"), owner=0x11),
        registration(url_name("172.17.0.5", timestamp="2"), owner=0x22),
    ]
    both = apply(
        nodes, plan_providers(nodes, index, ME, owners=Ownership(Origins(alive), here, {})), 1
    )
    assert len(both) == 2
    later_only = Ownership(Origins({0x22: Origin("172.17.0.5", "zk")}), here, {})
    after = apply(both, plan_providers(both, index, ME, owners=later_only), 1)
    assert [n.name for n in after] == [url_name("192.0.2.10", 32768, timestamp="2")]
