"""Ownership proofs: a session proves registrations of this host only, and of its own
container only; a proof some server did not answer says "unknown", never "gone"."""

from __future__ import annotations

import pytest

from sidecar.model import Endpoint, Origin, Origins, RegistryNode
from sidecar.ownership import LocalAddresses, Ownership
from sidecar.registry.sessions import parse_cons, parse_members

A, B = "172.18.0.2", "172.17.0.3"  # two containers of this engine, on different networks
HOST = LocalAddresses(
    anywhere=frozenset({"192.0.2.10"}),
    near=frozenset({"127.0.0.1", "10.0.0.4", "172.17.0.1", "172.18.0.1"}),
    containers=frozenset({A, B}),
)
ENDPOINT = Endpoint(A, 20880)
NODE = RegistryNode("/dubbo/x/providers", "n", b"", 0x51, 0)


def refusal(origin: Origin, unanswered: tuple[str, ...] = ()) -> str | None:
    owners = Ownership(Origins({0x51: origin}, unanswered), HOST, {})
    return owners.refusal(NODE, ENDPOINT, (A,))


@pytest.mark.parametrize(
    "origin",
    [
        Origin(A, "172.17.0.1"),  # the container itself, to a server at a Docker gateway
        Origin(A, "127.0.0.1"),  # ... to a server on loopback
        Origin("172.18.0.1", "172.18.0.1"),  # this host, through the container's gateway
        Origin("10.0.0.4", "10.0.0.4"),  # this host, to a server on this host
        Origin("192.0.2.10", "203.0.113.9"),  # this host's public address (NAT), anywhere
    ],
)
def test_sessions_of_the_container_or_this_host_prove_it(origin: Origin) -> None:
    """A session from the registering container's own address, or from one of this host's
    addresses, proves a registration of the container's address."""
    assert refusal(origin) is None


def test_another_containers_session_proves_nothing_about_this_one() -> None:
    """Container B's session (B on another network of this engine, or misconfigured)
    registering container A's address is left alone."""
    found = refusal(Origin(B, "172.17.0.1"))
    assert found is not None
    assert found.startswith("registered by another container's session")
    assert f"from {B} (as server 172.17.0.1 sees it)" in found


def test_container_addresses_seen_by_a_server_elsewhere_mean_that_hosts_containers() -> None:
    """To a server on another host, a container address is a container of *that* host."""
    found = refusal(Origin(A, "203.0.113.9"))
    assert found == (
        f"registered by session 0x51 from {A} (as server 203.0.113.9 sees it), not from this host"
    )


def test_a_proof_some_server_did_not_answer_is_unknown_not_gone() -> None:
    """A session no answering server knows is unknown while a server did not answer: it is
    refused as unknown, worth asking again, and never taken for gone; only a complete
    answer proves it gone."""
    incomplete = Origins({}, ("10.0.0.7:2181 did not answer: timed out",))
    owners = Ownership(incomplete, HOST, {})
    reason = owners.refusal(NODE, ENDPOINT, (A,))
    assert reason is not None
    assert reason.startswith("session 0x51 is unknown: not every server answered (10.0.0.7:2181")
    assert owners.unproven(NODE)
    assert not owners.disconnected(0x51)
    assert not incomplete.gone(0x51)
    complete = Ownership(Origins({}), HOST, {})
    assert complete.refusal(NODE, ENDPOINT, (A,)) == (
        "session 0x51 is not connected now: cannot prove it is this host's"
    )
    assert complete.disconnected(0x51)


def test_known_sessions_are_proven_while_another_server_is_silent() -> None:
    """A session a server did answer about is proven even when another did not answer."""
    assert refusal(Origin(A, "127.0.0.1"), ("10.0.0.7:2181 did not answer",)) is None


def test_ensemble_members_are_read_from_conf() -> None:
    """ZooKeeper 3.8's `conf` lists members without client ports (static clientPort: the
    asked server's port is assumed) or with them (dynamic configuration)."""
    conf = (
        "clientPort=47657\nserverId=1\nmembership: \n"
        "server.1=127.0.0.1:37067:56317:participant\n"
        "server.2=zk-2.zk-hs:45881:41717:participant;0.0.0.0:2182\n"
        "server.3=[fd00::3]:2888:3888:observer;[fd00::3]:2183\n"
        "server.4=10.0.0.4:2888:3888;2184\nversion=0\n"
    )
    assert parse_members(conf, 47657) == [
        ("127.0.0.1", 47657),
        ("zk-2.zk-hs", 2182),
        ("fd00::3", 2183),
        ("10.0.0.4", 2184),
    ]


def test_cons_session_ids_are_signed_like_zookeepers_stats() -> None:
    """cons prints ids as unsigned hex; a server id of 128 or more gives a negative long,
    which is how a node's ephemeralOwner carries it."""
    line = " /172.17.0.5:41234[1](queued=0,recved=1,sent=1,sid=0x8100000000000001,lop=PING)\n"
    assert parse_cons(line) == {0x8100000000000001 - 2**64: "172.17.0.5"}
