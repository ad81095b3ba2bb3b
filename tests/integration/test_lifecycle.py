"""Sessions and restarts on a real ZooKeeper and Docker Engine: provider and sidecar sessions
expire, the sidecar is killed, stopped or fails over, and no registration is lost or doubled."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from docker.models.containers import Container
from kazoo.client import KazooClient

from sidecar import urls
from sidecar.model import Endpoint
from testbed.consumer import ProvidersWatch
from testbed.engine import DockerEngine
from testbed.ensemble import ZooKeeperEnsemble
from testbed.images import wait_for_line
from testbed.polling import wait_until
from testbed.sessions import expire_session
from testbed.sidecar_process import SidecarProcess
from testbed.zookeeper import ZooKeeperServer

from .conftest import INTERFACE
from .helpers import children, owner, rewritten_name

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def provider_session(provider: Container, count: int = 1) -> tuple[int, bytes]:
    session, password = wait_for_line(provider, "session ", count=count).split()
    return int(session, 16), bytes.fromhex(password)


def saved_session(state_file: Path) -> tuple[int, bytes]:
    state = json.loads(state_file.read_text())
    return int(state["session_id"]), bytes.fromhex(state["password"])


def test_provider_session_expiry_keeps_exactly_one_rewrite(
    zookeeper: ZooKeeperServer,
    providers: str,
    registry: KazooClient,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """When the provider's session expires and it registers its container address again, the
    sidecar settles back to the single rewritten registration within 1 s, and a watching
    consumer never sees the provider missing."""
    provider = start_provider()
    start_sidecar()
    rewritten = rewritten_name(provider)
    wait_until(lambda: children(registry, providers) == [rewritten], 5, message="not rewritten")
    watch = ProvidersWatch(registry, providers)

    expire_session(zookeeper.connect_string, *provider_session(provider))
    wait_for_line(provider, "registered ", count=2)
    wait_until(lambda: watch.lists()[1:][-1:] == [[rewritten]], 5, message="not settled")

    assert watch.seconds_until([rewritten]) < 1.0
    assert all(rewritten in seen for seen in watch.lists())


def test_sidecar_session_expiry_recreates_its_rewrites_and_touches_nothing_else(
    zookeeper: ZooKeeperServer,
    tmp_path: Path,
    providers: str,
    registry: KazooClient,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """The sidecar's own session expiring takes its rewritten nodes with it; after it
    reconnects they are back within 2 s, and nodes it does not own are not touched."""
    provider = start_provider()
    registry.create(f"{providers}/not-a-url", b"keep me", ephemeral=True)
    foreign = urls.parse(rewritten_name(provider)).with_endpoint(Endpoint("10.255.0.1", 20880))
    registry.create(f"{providers}/{foreign}", b"10.255.0.1", ephemeral=True)
    state_file = tmp_path / "sidecar-state.json"
    sidecar = start_sidecar("--state-file", str(state_file))
    rewritten = rewritten_name(provider)
    wait_until(lambda: rewritten in children(registry, providers), 5, message="not rewritten")
    others = {n: registry.get(f"{providers}/{n}")[1] for n in ("not-a-url", foreign)}
    old_session, password = saved_session(state_file)

    expire_session(zookeeper.connect_string, old_session, password)
    expired = time.monotonic()
    wait_until(
        lambda: (
            rewritten in children(registry, providers)
            and owner(registry, f"{providers}/{rewritten}") != old_session
        ),
        5,
        message="rewrite not re-created",
    )
    assert time.monotonic() - expired < 2.0
    assert sorted(children(registry, providers)) == sorted(["not-a-url", foreign, rewritten])
    assert {n: registry.get(f"{providers}/{n}")[1] for n in others} == others
    assert [e["reason"] for e in sidecar.logged("restore")] == [
        "its container still serves; re-creating it"
    ]


def test_killed_sidecar_resumes_its_session_and_consumers_see_no_gap(
    tmp_path: Path,
    providers: str,
    registry: KazooClient,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """SIGKILL, then a restart with the same state file within the session timeout: the new
    process resumes the same session, the rewritten node is never gone, nothing is rewritten
    again."""
    provider = start_provider()
    state_file = tmp_path / "sidecar-state.json"
    first = start_sidecar("--state-file", str(state_file))
    rewritten = rewritten_name(provider)
    wait_until(lambda: children(registry, providers) == [rewritten], 5, message="not rewritten")
    session = owner(registry, f"{providers}/{rewritten}")
    created = registry.get(f"{providers}/{rewritten}")[1].czxid
    watch = ProvidersWatch(registry, providers)

    first.kill()
    second = start_sidecar("--state-file", str(state_file))

    assert second.session == session
    assert second.events("session_resumed")
    # The same node (a watch's notification may trail; the creating transaction does not).
    assert registry.get(f"{providers}/{rewritten}")[1].czxid == created
    assert owner(registry, f"{providers}/{rewritten}") == session
    assert all(seen == [rewritten] for seen in watch.lists())
    assert not [e for e in second.events() if e["event"] in ("rewrite", "update", "restore")]


@pytest.mark.parametrize("close_session", [False, True])
def test_sigterm_keeps_the_session_for_a_successor_unless_asked_to_close_it(
    close_session: bool,
    providers: str,
    registry: KazooClient,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """By default SIGTERM leaves the session (and the rewrites) to the next instance;
    with --close-session-on-exit the rewrites disappear with the process, and so do their
    records: a sidecar started later does not bring them back (decommissioned)."""
    provider = start_provider()
    extra = ["--close-session-on-exit"] if close_session else []
    sidecar = start_sidecar(*extra)
    rewritten = rewritten_name(provider)
    wait_until(lambda: children(registry, providers) == [rewritten], 5, message="not rewritten")

    assert sidecar.terminate() == 0
    assert not sidecar.events("shutdown_step_failed")
    if close_session:
        wait_until(lambda: children(registry, providers) == [], 1, message="still registered")
        later = start_sidecar()
        later.wait_for_event("resync_done")
        assert children(registry, providers) == []
    else:
        assert children(registry, providers) == [rewritten]


@pytest.fixture
def ensemble(tmp_path: Path) -> Iterator[ZooKeeperEnsemble]:
    """Three ZooKeeper servers on all addresses, for failover."""
    with ZooKeeperEnsemble(tmp_path / "ensemble", size=3, bind="0.0.0.0") as servers:
        yield servers


def test_ensemble_failover_loses_and_doubles_nothing(
    ensemble: ZooKeeperEnsemble,
    engine: DockerEngine,
    root: str,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """Killing the leader, then the server the sidecar is connected to: the sidecar keeps its
    session, so its rewritten node stays, exactly once, with no duplicate."""
    gateway = engine.bridge_gateway()
    in_container = ",".join(f"{gateway}:{s.port}" for s in ensemble.servers)
    provider = start_provider(connect=in_container)
    sidecar = start_sidecar(connect=ensemble.connect_string)
    providers = f"{root}/{INTERFACE}/providers"
    rewritten = rewritten_name(provider)
    client = KazooClient(hosts=ensemble.connect_string, timeout=10.0)
    client.start(timeout=15)
    try:
        wait_until(lambda: children(client, providers) == [rewritten], 5, message="no rewrite")
        session = sidecar.session

        old_leader = ensemble.leader()
        old_leader.kill()
        ensemble.leader(timeout=30)
        wait_until(lambda: children(client, providers) == [rewritten], 10, message="lost")
        assert owner(client, f"{providers}/{rewritten}") == session
        old_leader.restart()  # a quorum needs two of three: bring it back before the next kill

        def serving() -> ZooKeeperServer | None:
            alive = (s for s in ensemble.servers if s.running)
            return next((s for s in alive if f"{session:x}" in s.four_letter("cons")), None)

        wait_until(serving, 15, message="the sidecar is connected to no server").kill()
        wait_until(
            lambda: any(
                f"{session:x}" in s.four_letter("cons") for s in ensemble.servers if s.running
            ),
            15,
            message="sidecar did not reconnect",
        )
        wait_until(lambda: children(client, providers) == [rewritten], 10, message="lost")
        assert owner(client, f"{providers}/{rewritten}") == session
        assert not sidecar.events("restore")
    finally:
        client.stop()
        client.close()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"session_id": 18446744073709551616, "password": "' + "00" * 16 + '", "engine": "",'
         ' "managed": {}}', "session not resumed: session id 18446744073709551616 is not"),
        ('{"session_id": 4097, "passw', "is not JSON (truncated?)"),
    ],
)  # fmt: skip
def test_an_unusable_state_file_is_reported_and_the_sidecar_connects(
    tmp_path: Path,
    content: str,
    problem: str,
    providers: str,
    registry: KazooClient,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """A state file with a session id outside a signed 64-bit long (it killed kazoo's
    connection thread: the process stayed up, never connected, said nothing) or a truncated
    one: one warning naming the file and what was wrong, then a new session and the work
    done as usual."""
    state_file = tmp_path / "bad-state.json"
    state_file.write_text(content)
    provider = start_provider()
    sidecar = start_sidecar("--state-file", str(state_file))
    [warning] = sidecar.events("state_file_unreadable")
    assert warning["level"] == "warning"
    assert warning["problem"].startswith(f"state file {state_file}")
    assert problem in warning["problem"]
    wait_until(lambda: children(registry, providers) == [rewritten_name(provider)], 5,
               message="not rewritten")  # fmt: skip
