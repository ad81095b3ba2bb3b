"""What anyone who can write the tree can make a fleet of sidecars do, on a real ZooKeeper
(stand-in hosts, tests/integration/stand_ins.py): the same registrations leave the same
registry with and without --fleet; a forged work node moves nothing; junk in every
coordination path jams no election; a work node nobody may write holds back no other member;
a registration made while the connection is down is rewritten once it is back."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.security import make_acl

from sidecar.fleet.indexer import ELECTION, MEMBERS, WORK
from testbed.polling import wait_until
from testbed.sessions import client_from
from testbed.sidecar_process import SidecarProcess
from testbed.zookeeper import ZooKeeperServer

from .conftest import INTERFACE
from .helpers import children, one_shot, remove_left_behind
from .stand_ins import CONTAINER, StandIns, host_address, register

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
STRANGER = "127.0.0.9"  # a host that runs no sidecar
TAKEOVER_SECONDS = 2.0  # the outcome: the next indexer works within 2 s of the session's end


@pytest.fixture
def clean_fleet(registry: KazooClient) -> Iterator[None]:
    """The fleet's paths as the test leaves them are not the next test's."""
    yield
    remove_left_behind(registry, "/dubbo-nat-sidecar/fleet")


def _decisions(sidecars: list[SidecarProcess]) -> Counter[tuple[str, str]]:
    """Every write every sidecar made: its action and the node."""
    return Counter(
        (e["event"], e["node"])
        for s in sidecars
        for e in s.events()
        if e["event"] in ("rewrite", "update", "restore", "remove", "write_failed")
    )


def test_the_same_registrations_leave_the_same_registry_with_and_without_the_fleet(
    tmp_path: Path, zookeeper: ZooKeeperServer, registry: KazooClient, root: str,
    providers: str, clean_fleet: None,
) -> None:  # fmt: skip
    """Two hosts' providers and a host without a sidecar register the same container
    address: with and without --fleet the sidecars make the same writes and leave the
    registry the same (each host's own rewritten, the stranger's left alone)."""
    outcomes = [
        _registrations_on_two_hosts(tmp_path / name, zookeeper, registry, root, providers, extra)
        for name, extra in (("watch", ()), ("fleet", ("--fleet",)))
    ]
    assert outcomes[0] == outcomes[1]


def _registrations_on_two_hosts(
    here: Path, zookeeper: ZooKeeperServer, registry: KazooClient, root: str, providers: str,
    extra: tuple[str, ...],
) -> tuple[set[str], Counter[tuple[str, str]]]:  # fmt: skip
    """The registry and the sidecars' writes once two hosts' providers and a stranger have
    registered, each host's own rewritten; the registry empty again after."""
    here.mkdir()
    hosts = StandIns(here, zookeeper, root, extra)
    clients = []
    try:
        sidecars = [hosts.start(i) for i in range(2)]
        expected = set()
        for i, address in ((0, host_address(0)), (1, host_address(1)), (9, STRANGER)):
            client, rewritten = register(zookeeper, root, address, f"app-{i}", 30000 + i)
            clients.append(client)
            expected.add(rewritten if i < 2 else _original(client, providers, f"app-{i}"))
        wait_until(lambda: set(children(registry, providers)) == expected, 20,
                   message=f"not as expected: {children(registry, providers)}")  # fmt: skip
        found = (set(children(registry, providers)), _decisions(sidecars))
    finally:
        hosts.close()
        for client in clients:
            client.stop()
            client.close()
    wait_until(lambda: children(registry, providers) == [], 20)  # the sessions are gone
    return found


def _original(client: KazooClient, providers: str, app: str) -> str:
    names: list[str] = client.get_children(providers)
    [name] = [n for n in names if f"application%3D{app}%26" in n]
    return name


def test_a_forged_work_node_moves_no_registration(
    tmp_path: Path, zookeeper: ZooKeeperServer, registry: KazooClient, root: str,
    providers: str, clean_fleet: None,
) -> None:  # fmt: skip
    """A host without a sidecar registers the container address every host has. Anyone
    writes host 0's work node naming that path and saying the stranger's session connects
    from host 0: host 0 looks at the path, asks the servers, and leaves it alone."""
    hosts = StandIns(tmp_path, zookeeper, root, ["--fleet"])
    client, _ = register(zookeeper, root, STRANGER, "stranger")
    try:
        first = hosts.start(0)
        hosts.start(1)
        [original] = children(registry, providers)
        member = next(n for n in children(registry, MEMBERS) if "host-0" in n)
        forged = {
            "paths": {providers: ["forged", 99]},
            "origins": {f"{client.client_id[0]:x}": [host_address(0), "127.0.0.1"]},
        }
        registry.set(f"{WORK}/{member}", json.dumps(forged).encode())
        wait_until(lambda: any(e["node"].endswith(original) for e in first.events("left_alone")),
                   15, message="host 0 did not look at the path")  # fmt: skip
        [left] = [e for e in first.events("left_alone") if e["node"].endswith(original)]
        assert "not from this host" in left["reason"]
        assert children(registry, providers) == [original]
    finally:
        hosts.close()
        client.stop()
        client.close()


JUNK = {
    f"{ELECTION}/a": b"",
    f"{ELECTION}/n_0000000000": b"nobody",
    f"{MEMBERS}/nobody": b'{"session": "1", "hosts": ["127.0.0.2"], "containers": []}',
    f"{WORK}/nobody": b"[not json",
}


def test_junk_in_every_coordination_path_jams_no_election(
    tmp_path: Path, zookeeper: ZooKeeperServer, registry: KazooClient, root: str,
    providers: str, clean_fleet: None,
) -> None:  # fmt: skip
    """Persistent junk in the election, members and work paths, and a live session's ballot
    that belongs to no member: three hosts elect an indexer all the same; it dies, and the
    next works within 2 s of its session's end; status --fleet shows the junk ignored."""
    for path, data in JUNK.items():
        registry.create(path, data, makepath=True)
    intruder = KazooClient(hosts=zookeeper.connect_string)
    intruder.start(timeout=15)
    intruder.create(f"{ELECTION}/n_", b"E@x+host", ephemeral=True, sequence=True)
    hosts = StandIns(tmp_path, zookeeper, root, ["--fleet"])
    clients: list[KazooClient] = [intruder]
    try:
        sidecars = [hosts.start(i) for i in range(3)]
        wait_until(lambda: sum(bool(s.events("fleet_indexer_elected")) for s in sidecars) == 1,
                   15, message="no indexer elected")  # fmt: skip
        [indexer] = [s for s in sidecars if s.events("fleet_indexer_elected")]
        i = sidecars.index(indexer)
        survivor = next(n for n in range(3) if n != i)
        client, rewritten = register(zookeeper, root, host_address(survivor), "later",
                                     30000 + survivor)  # fmt: skip
        clients.append(client)
        hosts.end_session(i, indexer)
        ended = time.monotonic()
        wait_until(lambda: rewritten in children(registry, providers), 20,
                   message="no indexer took over")  # fmt: skip
        assert time.monotonic() - ended <= TAKEOVER_SECONDS
        shown = one_shot("status", zookeeper.connect_string, root, "none", "--fleet",
                         "--static-ports", "20880:30000")  # fmt: skip
        ignored = shown.stdout.partition("IGNORED")[2]
        assert all(path in ignored for path in JUNK if not path.startswith(WORK))
    finally:
        hosts.close()
        for c in clients:
            c.stop()
            c.close()


def test_a_work_node_nobody_may_write_holds_back_no_other_member(
    tmp_path: Path, zookeeper: ZooKeeperServer, registry: KazooClient, root: str,
    providers: str, clean_fleet: None,
) -> None:  # fmt: skip
    """A client makes itself a member (its own live session, the container address every
    host has) with a work node nobody may write: the indexer says so once and every real
    host's registration is rewritten all the same."""
    intruder = KazooClient(hosts=zookeeper.connect_string)
    intruder.start(timeout=15)
    session = f"{intruder.client_id[0]:x}"
    doc = {"session": session, "hosts": ["127.0.0.99"], "containers": [CONTAINER]}
    intruder.create(f"{MEMBERS}/intruder", json.dumps(doc).encode(), ephemeral=True,
                    makepath=True)  # fmt: skip
    registry.ensure_path(WORK)
    registry.create(f"{WORK}/intruder", b"{}", acl=[make_acl("world", "anyone", read=True)])
    hosts = StandIns(tmp_path, zookeeper, root, ["--fleet"])
    clients = [intruder]
    try:
        sidecars = [hosts.start(i) for i in range(2)]
        expected = set()
        for i in range(2):
            client, rewritten = register(zookeeper, root, host_address(i), f"app-{i}", 30000 + i)
            clients.append(client)
            expected.add(rewritten)
        wait_until(lambda: set(children(registry, providers)) == expected, 20,
                   message="a member's work was held back")  # fmt: skip
        said = [e for s in sidecars for e in s.events("fleet_work_unwritable")]
        assert {e["node"] for e in said} == {f"{WORK}/intruder"}
    finally:
        hosts.close()
        for c in clients:
            c.stop()
            c.close()
        registry.delete(f"{WORK}/intruder")


def test_a_registration_made_while_the_indexer_is_away_is_rewritten_once_it_is_back(
    tmp_path: Path, root: str
) -> None:
    """The ZooKeeper server restarts; a provider registers as soon as it is back, before the
    sidecars have reconnected: within 2 s of the indexer's session resuming the registration
    is rewritten."""
    with ZooKeeperServer(tmp_path / "zk", tick_time_ms=500) as server:
        hosts = StandIns(tmp_path, server, root, ["--fleet", "--session-timeout", "20"])
        clients = []
        try:
            sidecars = [hosts.start(i) for i in range(2)]
            wait_until(lambda: any(s.events("fleet_indexer_elected") for s in sidecars), 15)
            [indexer] = [s for s in sidecars if s.events("fleet_indexer_elected")]
            server.stop()
            server.start()
            client, rewritten = register(server, root, host_address(1), "during", 30001)
            clients.append(client)
            resumed = indexer.wait_for_event("zookeeper_resumed", timeout=30)
            observer = client_from(server.connect_string, "127.0.0.1")
            clients.append(observer)
            providers = f"{root}/{INTERFACE}/providers"
            wait_until(
                lambda: rewritten in children(observer, providers),
                20,
                message="the registration made while away was never rewritten",
            )
            seen = time.time()
            assert seen - _timestamp(resumed) <= 2.0
        finally:
            hosts.close()
            for c in clients:
                c.stop()
                c.close()


def _timestamp(event: dict[str, object]) -> float:
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()
