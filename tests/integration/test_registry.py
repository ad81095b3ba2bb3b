"""The registry module on a real ZooKeeper: what the periodic sweep re-reads."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError
from kazoo.retry import KazooRetry

from sidecar.model import Connection, Create, Delete, Outcome, Transaction
from sidecar.registry.internals import fast_path_allowed
from sidecar.registry.readonly import ReadOnlyRefusal, ReadOnlyRegistry
from sidecar.registry.zookeeper import ZooKeeperRegistry
from testbed.ensemble import ZooKeeperEnsemble
from testbed.polling import wait_until
from testbed.zookeeper import ZooKeeperServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_the_sweep_rereads_only_paths_whose_children_moved_unseen(
    zookeeper: ZooKeeperServer, root: str, registry: KazooClient
) -> None:
    """After a read, a path whose children changed (as a missed watch would hide) is due for
    a re-read; an unchanged one, or one changed only by the sidecar's own write, is not; a
    path never read, or gone, is."""
    quiet, moved, written, unread = (f"{root}/{n}/providers" for n in ("a", "b", "c", "d"))
    for path in (quiet, moved, written, unread):
        registry.ensure_path(path)
    sidecar = ZooKeeperRegistry(zookeeper.connect_string, 10, lambda _: None, lambda _: None)
    sidecar.connect(15)
    try:
        sidecar.read_paths([quiet, moved, written])
        registry.create(f"{moved}/x", b"")
        sidecar.apply_all([Transaction((Create(f"{written}/y", b""),))])
        gone = f"{root}/gone/providers"
        assert sidecar.changed_since_read([quiet, moved, written, unread, gone]) == {
            moved,
            unread,
            gone,
        }
    finally:
        sidecar.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_client_whose_connection_thread_died_says_so(zookeeper: ZooKeeperServer) -> None:
    """A session id out of range kills kazoo's connection thread (nothing ever connects
    again, nothing is logged): the registry reports it, so /healthz can fail."""
    broken = ZooKeeperRegistry(
        zookeeper.connect_string, 10, lambda _: None, lambda _: None, resume=(2**64, b"p" * 16)
    )
    healthy = ZooKeeperRegistry(zookeeper.connect_string, 10, lambda _: None, lambda _: None)
    try:
        broken.connect_in_background()
        healthy.connect_in_background()
        wait_until(lambda: not broken.alive, 10, message="the dead thread went unnoticed")
        wait_until(lambda: healthy.connected, 10)
        assert healthy.alive
    finally:
        broken.close()
        healthy.close()


def test_a_resumed_session_gets_its_watches_back_and_only_changes_fire(tmp_path: Path) -> None:
    """The server the sidecar is on dies: the client reconnects elsewhere with the same
    session (RESUMED, not a new one), the watches it held are set again in one request, and
    a path that changed meanwhile fires while one that did not stays quiet."""
    with ZooKeeperEnsemble(tmp_path / "ensemble", size=3) as ensemble:
        writer = KazooClient(hosts=ensemble.connect_string, timeout=10)
        writer.start(timeout=30)
        quiet, moved = "/resume/quiet/providers", "/resume/moved/providers"
        for path in (quiet, moved):
            writer.ensure_path(path)
        changed: list[str] = []
        states: list[Connection] = []
        sidecar = ZooKeeperRegistry(ensemble.connect_string, 10, changed.append, states.append)
        sidecar.connect(15)
        try:
            sidecar.read_paths([quiet, moved])
            session = sidecar.session_id
            [serving] = [
                s for s in ensemble.servers if f"sid=0x{session:x}" in s.four_letter("cons")
            ]
            serving.kill()
            wait_until(lambda: Connection.SUSPENDED in states, 15)
            _create_through_failover(writer, f"{moved}/x")
            wait_until(lambda: Connection.RESUMED in states, 30, message=f"states {states}")
            assert sidecar.session_id == session
            wait_until(lambda: moved in changed, 10, message="the change made meanwhile")
            assert quiet not in changed
            assert Connection.CONNECTED not in states[1:]
            _create_through_failover(writer, f"{quiet}/y")  # the watches keep working after
            wait_until(lambda: quiet in changed, 10, message="a watch set again")
        finally:
            sidecar.close()
            writer.stop()
            writer.close()


def _create_through_failover(client: KazooClient, path: str) -> None:
    """Create ``path`` while the ensemble fails over (a dead leader disconnects every
    client): tried again until it exists; a try cut off after it went through is fine."""

    def once() -> None:
        with contextlib.suppress(NodeExistsError):
            client.create(path, b"")

    KazooRetry(max_tries=-1, deadline=30)(once)


def test_put_writes_many_nodes_past_the_packet_limit_and_creates_the_missing(
    zookeeper: ZooKeeperServer, root: str, registry: KazooClient
) -> None:
    """Work nodes written together (more than one request may carry): existing ones are
    updated, missing ones (and a missing parent) created, all with their data."""
    work = f"{root}/work"
    registry.ensure_path(work)
    for i in range(4):
        registry.create(f"{work}/m{i}", b"old")
    nodes = {f"{work}/m{i}": bytes([65 + i]) * 300_000 for i in range(6)}
    nodes[f"{root}/new/parent/m9"] = b"fresh"
    sidecar = ZooKeeperRegistry(zookeeper.connect_string, 10, lambda _: None, lambda _: None)
    sidecar.connect(15)
    try:
        sidecar.put(nodes)
        assert {path: registry.get(path)[0] for path in nodes} == nodes
    finally:
        sidecar.close()


def test_a_path_moved_only_by_the_sessions_own_write_is_told_apart(
    zookeeper: ZooKeeperServer, root: str, registry: KazooClient
) -> None:
    """What a fleet member relies on to skip a second read: after reading a path and writing
    there (a create and a delete in one multi), the child version a listing then shows is
    one its own write explains; after another client's create, or with no write of its own
    since its read, it is not."""
    path = f"{root}/svc/providers"
    registry.ensure_path(path)
    registry.create(f"{path}/original", b"", ephemeral=True)
    sidecar = ZooKeeperRegistry(zookeeper.connect_string, 10, lambda _: None, lambda _: None)
    sidecar.connect(15)
    try:
        sidecar.read_paths([path], watch=False)
        listing = sidecar.list_names([path])[path]
        assert listing is not None
        assert not sidecar.moved_only_by_own_writes(path, listing.version)
        sidecar.apply_all(
            [Transaction((Create(f"{path}/rewritten", b""), Delete(f"{path}/original", -1)))]
        )
        listing = sidecar.list_names([path])[path]
        assert listing is not None
        assert sidecar.moved_only_by_own_writes(path, listing.version)
        registry.create(f"{path}/another", b"", ephemeral=True)
        listing = sidecar.list_names([path])[path]
        assert listing is not None
        assert not sidecar.moved_only_by_own_writes(path, listing.version)
    finally:
        sidecar.close()


def test_reads_queued_together_are_sent_together_and_each_gets_its_answer(
    zookeeper: ZooKeeperServer, root: str, registry: KazooClient
) -> None:
    """A read of 1,200 paths at once goes out in a few writes, not one per request; each
    path still gets its own listing, and its own watch: a later change to one path is
    reported for that path alone."""
    paths = _paths_with_one_node(registry, root, 1200)
    with _counting_writes(zookeeper) as (sidecar, changed, writes):
        listed = sidecar.list_names(paths)
        assert {p: listing.names if listing else None for p, listing in listed.items()} == {
            p: [f"n{i}"] for i, p in enumerate(paths)
        }
        assert writes[0] <= len(paths) // 10
        registry.create(f"{paths[777]}/again")
        wait_until(lambda: bool(changed), 10, message="the change was not reported")
        assert changed == [paths[777]]


def _paths_with_one_node(registry: KazooClient, root: str, count: int) -> list[str]:
    """``count`` providers paths under ``root``, the i-th holding one node ``n<i>``."""
    paths = [f"{root}/s{i}/providers" for i in range(count)]
    for result in [registry.create_async(f"{p}/n{i}", makepath=True) for i, p in enumerate(paths)]:
        result.get(timeout=10)
    return paths


@contextlib.contextmanager
def _counting_writes(
    zookeeper: ZooKeeperServer, fast_path: bool = True
) -> Iterator[tuple[ZooKeeperRegistry, list[str], list[int]]]:
    """A connected registry, the paths it reports changed, and how many socket writes its
    connection made (one list item, counted up)."""
    changed: list[str] = []
    sidecar = ZooKeeperRegistry(zookeeper.connect_string, 10, changed.append, lambda _: None)
    assert sidecar.fast_path is fast_path
    sidecar.connect(15)
    writes = [0]
    connection = sidecar._client._connection
    write = connection._write

    def counted(*args: object) -> None:
        writes[0] += 1
        write(*args)

    connection._write = counted
    try:
        yield sidecar, changed, writes
    finally:
        sidecar.close()


def test_a_request_that_cannot_be_encoded_fails_alone(
    zookeeper: ZooKeeperServer, root: str, registry: KazooClient
) -> None:
    """A path with no UTF-8 form fails its own request; the requests sent with it are
    answered and the connection lives on (kazoo's own loop died on it: nothing answered
    again)."""
    registry.ensure_path(f"{root}/ok")
    sidecar = ZooKeeperRegistry(zookeeper.connect_string, 10, lambda _: None, lambda _: None)
    sidecar.connect(15)
    try:
        client = sidecar._client
        bad = client.get_children_async(f"{root}/\udc80")
        good = client.get_children_async(f"{root}/ok")
        with pytest.raises(UnicodeEncodeError):
            bad.get(timeout=10)
        assert good.get(timeout=10) == []
        assert sidecar.list_names([f"{root}/ok"])[f"{root}/ok"] is not None
        assert sidecar.alive
    finally:
        sidecar.close()


@pytest.fixture
def kazoo_changed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A kazoo whose private ``_call`` takes one more parameter (it works as before): the
    check finds it, so sessions use kazoo's own connection loop."""
    call = KazooClient._call

    def _call(self: Any, request: Any, async_object: Any, timeout: Any = None) -> Any:
        return call(self, request, async_object)

    monkeypatch.setattr(KazooClient, "_call", _call)
    fast_path_allowed.cache_clear()
    yield
    fast_path_allowed.cache_clear()


@pytest.mark.usefixtures("kazoo_changed")
def test_with_kazoo_changed_the_registry_reads_writes_and_watches_through_kazoos_own_loop(
    zookeeper: ZooKeeperServer, root: str, registry: KazooClient
) -> None:
    """Kazoo's internals differ from those tested: every request goes kazoo's own way (one
    write each), and reads, watches, puts and multis still get each their own answer."""
    paths = _paths_with_one_node(registry, root, 200)
    with _counting_writes(zookeeper, fast_path=False) as (sidecar, changed, writes):
        nodes = sidecar.read_paths(paths)
        assert {p: [n.name for n in listed] for p, listed in nodes.items()} == {
            p: [f"n{i}"] for i, p in enumerate(paths)
        }
        assert writes[0] >= 2 * len(paths)  # a listing and a read per path, one write each
        [applied] = sidecar.apply_all(
            [Transaction((Create(f"{paths[0]}/rewritten", b"r"), Delete(f"{paths[0]}/n0", -1)))]
        )
        assert applied.ok
        assert sidecar.put({f"{root}/work/m": b"w"}) == {}
        assert registry.get(f"{root}/work/m")[0] == b"w"
        registry.create(f"{paths[7]}/again")
        wait_until(lambda: paths[7] in changed, 10, message="the change was not reported")
        assert sorted(registry.get_children(paths[0])) == ["rewritten"]
        assert changed == [paths[0], paths[7]]  # its own multi moved paths[0] too


def test_the_read_only_registry_of_plan_and_status_changes_nothing(
    zookeeper: ZooKeeperServer, root: str, registry: KazooClient
) -> None:
    """Every write the registry protocols offer, asked of the registry ``plan`` and ``status``
    use, leaves the tree exactly as it was: transactions come back as dry runs, nodes put
    are reported not written, a lease is not taken, a ballot not cast."""
    registry.create(f"{root}/kept", b"before", makepath=True)
    sidecar = ReadOnlyRegistry(zookeeper.connect_string, 10, lambda _: None, lambda _: None)
    sidecar.connect(15)
    try:
        results = sidecar.start([Transaction((Create(f"{root}/new", b"x"),))])()
        assert [r.outcome for r in results] == [Outcome.DRY_RUN]
        problems = sidecar.put({f"{root}/kept": b"after", f"{root}/missing/node": b"x"})
        assert set(problems) == {f"{root}/kept", f"{root}/missing/node"}
        assert sidecar.acquire(f"{root}/lease", b"me") is False
        with pytest.raises(ReadOnlyRefusal):
            sidecar.join(f"{root}/ballots/b-", b"me")
        sidecar.release(f"{root}/kept")
    finally:
        sidecar.close()
    assert registry.get_children(root) == ["kept"]
    assert registry.get(f"{root}/kept")[0] == b"before"
