"""Ownership proofs on real ZooKeeper servers: every server of the ensemble is asked (every
address of a name, every published member), an answer is read whole or not at all, and a
proof that misses a server says so instead of declaring sessions gone."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from sidecar.model import Origin, Origins
from sidecar.registry.sessions import SessionOrigins
from testbed.ensemble import ZooKeeperEnsemble
from testbed.polling import wait_until
from testbed.relay import ConsRelay
from testbed.sidecar_process import SidecarProcess
from testbed.zookeeper import ZooKeeperServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
ADDRESSES = ("127.0.0.1", "127.0.0.2", "127.0.0.3")


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperEnsemble]:
    """Three servers sharing one client port, each on its own loopback address."""
    work = tmp_path_factory.mktemp("ensemble")
    with ZooKeeperEnsemble(work, addresses=ADDRESSES) as servers:
        yield servers


@pytest.fixture
def sessions_on_each(ensemble: ZooKeeperEnsemble) -> Iterator[dict[str, int]]:
    """One client session connected to each server: server address -> session id."""
    clients = [
        KazooClient(hosts=server.connect_string, timeout=10.0) for server in ensemble.servers
    ]
    try:
        for client in clients:
            client.start(timeout=15)
        yield {s.host: c.client_id[0] for s, c in zip(ensemble.servers, clients, strict=True)}
    finally:
        for client in clients:
            client.stop()
            client.close()


def fetch_resolving(name: str, addresses: tuple[str, ...], connect: str, tmp: Path) -> Origins:
    """SessionOrigins(connect).fetch() run where ``name`` resolves to ``addresses`` (a hosts
    file bound over /etc/hosts in a mount namespace of that process only)."""
    hosts = tmp / "hosts"
    hosts.write_text("127.0.0.1 localhost\n" + "".join(f"{a} {name}\n" for a in addresses))
    script = (
        "import json; from sidecar.registry.sessions import SessionOrigins\n"
        f"o = SessionOrigins({connect!r}, 0).fetch()\n"
        "print(json.dumps({'sessions': {str(k): [v.address, v.server] "
        "for k, v in o.sessions.items()}, 'unanswered': o.unanswered}))"
    )
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$1" -c "$2"',
         str(hosts), sys.executable, script],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    sessions = {int(k): Origin(*v) for k, v in doc["sessions"].items()}
    return Origins(sessions, tuple(doc["unanswered"]))


def test_one_name_for_the_whole_ensemble_asks_every_address(
    ensemble: ZooKeeperEnsemble, sessions_on_each: dict[str, int], tmp_path: Path
) -> None:
    """A connect string with one DNS name for the ensemble (as in the Kubernetes example):
    every address the name resolves to is asked, so a session on any server is known, with
    the server that knows it."""
    port = ensemble.servers[0].port
    origins = fetch_resolving("zk-ensemble", ADDRESSES, f"zk-ensemble:{port}", tmp_path)
    assert origins.complete, origins.unanswered
    for server, session in sessions_on_each.items():
        assert origins.sessions[session].server == server


def test_members_missing_from_the_connect_string_are_asked(
    ensemble: ZooKeeperEnsemble, sessions_on_each: dict[str, int]
) -> None:
    """A connect string naming one server: the members the servers publish (`conf`) are asked
    too. With one member down, the proof names it as not answering; with two down, the last
    one serves no requests (no quorum) and lists no connection, which is no answer either
    (it was taken as "no session connected": every session gone). No session is ever taken
    for gone while a server is silent."""
    first, second, third = ensemble.servers
    origins = SessionOrigins(first.connect_string, 0).fetch()
    assert origins is not None
    assert origins.complete, origins.unanswered
    assert set(sessions_on_each.values()) <= set(origins.sessions)
    try:
        third.stop()
        wait_until(lambda: first.mode() and second.mode(), 60, message="no new leader")
        partial = SessionOrigins(first.connect_string, 0).fetch()
        assert partial is not None
        assert [u.split()[0] for u in partial.unanswered] == [f"127.0.0.3:{third.port}"]
        assert not partial.gone(sessions_on_each["127.0.0.3"])
        second.stop()
        wait_until(lambda: first.mode() is None, 60, message="still serving without quorum")
        alone = SessionOrigins(first.connect_string, 0).fetch()
        assert alone is not None
        assert (
            alone.unanswered[0]
            == f"127.0.0.1:{first.port} did not answer: not serving requests now"
        )
        assert not any(alone.gone(session) for session in sessions_on_each.values())
    finally:
        for server in (second, third):
            if not server.running:
                server.start(wait=False)
        ensemble.wait_ready()


@pytest.fixture
def forty_sessions(zookeeper: ZooKeeperServer) -> Iterator[list[int]]:
    clients = [KazooClient(hosts=zookeeper.connect_string, timeout=10.0) for _ in range(40)]
    try:
        for client in clients:
            client.start(timeout=15)
        yield [client.client_id[0] for client in clients]
    finally:
        for client in clients:
            client.stop()
            client.close()


def test_a_slow_answer_is_read_whole(zookeeper: ZooKeeperServer, forty_sessions: list[int]) -> None:
    """`cons` output still arriving after 2 s is read to its end (it was cut off and taken
    as complete: 21 of 40 sessions)."""
    with ConsRelay((zookeeper.host, zookeeper.port), spread=2.5) as relay:
        origins = SessionOrigins(f"127.0.0.1:{relay.port}", 0, timeout=5.0).fetch()
    assert origins is not None
    assert origins.complete, origins.unanswered
    assert set(forty_sessions) <= set(origins.sessions)


def test_an_answer_still_arriving_at_the_deadline_makes_the_proof_unknown(
    zookeeper: ZooKeeperServer, forty_sessions: list[int]
) -> None:
    """A server whose answer has not ended by the deadline did not answer: the proof is not
    complete, and a session only the rest of its answer would name is unknown, not gone."""
    late = forty_sessions[0]
    with ConsRelay((zookeeper.host, zookeeper.port), spread=10.0) as relay:
        relay.last = f"sid=0x{late:x}"
        connect = f"127.0.0.1:{relay.port}"
        origins = SessionOrigins(connect, 0, timeout=2.0).fetch()
    assert origins is not None
    assert not origins.complete
    assert origins.unanswered[0].startswith(f"127.0.0.1:{relay.port} did not answer")
    assert not origins.gone(late)


def test_a_standby_never_takes_the_lease_on_a_partial_proof(
    zookeeper: ZooKeeperServer, start_sidecar: Callable[..., SidecarProcess]
) -> None:
    """A second sidecar for the same scope stands by while the first holds the lease, even
    when the servers' answer it reads is still arriving, the holder's session last, when its
    deadline comes (before, it took the answer so far as complete, found the holder's
    session missing and took the lease from a live sidecar)."""
    holder = start_sidecar()
    held = holder.wait_for_event("lease_held")
    with ConsRelay((zookeeper.host, zookeeper.port), spread=10.0) as relay:
        relay.last = f"sid={held['session']}"
        standby = start_sidecar(connect=f"127.0.0.1:{relay.port}", ready=False)
        standby.wait_for_event("lease_standing_by")
        wait_until(lambda: relay.cons_asked >= 3, 60, message="the standby did not ask again")
        assert standby.events("lease_held") == []
    client = KazooClient(hosts=zookeeper.connect_string)
    client.start(timeout=15)
    try:
        owner = client.get(held["lease"])[1].ephemeralOwner
    finally:
        client.stop()
        client.close()
    assert f"0x{owner:x}" == held["session"]
