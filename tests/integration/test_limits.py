"""Writes bounded by what the servers accept, in bytes, on a real ZooKeeper: batches under
jute.maxbuffer, a transaction too large left alone while the others go on, a batch the
servers drop split until the culprit stands alone; and end to end, registrations with long
URLs next to one too long to rewrite, through a restart past the session timeout."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.security import make_acl

from sidecar import urls
from sidecar.model import Delete, Endpoint, Outcome, SetData, Transaction, WriteResult
from sidecar.registry.zookeeper import ZooKeeperRegistry
from testbed.dubbo_url import java_url_encode
from testbed.polling import wait_until
from testbed.sessions import client_from, expire_session
from testbed.sidecar_process import SidecarProcess
from testbed.zookeeper import ZooKeeperServer

from .conftest import INTERFACE
from .helpers import children

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
HOST = "127.0.0.7"  # the stand-in host's address: its providers connect from it
CONTAINER = "10.66.0.5"
OpenSession = Callable[[ZooKeeperServer], ZooKeeperRegistry]


@pytest.fixture
def session_on() -> Iterator[OpenSession]:
    """Opens sidecar sessions on a server; closes them after the test."""
    opened: list[ZooKeeperRegistry] = []

    def open_on(server: ZooKeeperServer) -> ZooKeeperRegistry:
        registry = ZooKeeperRegistry(server.connect_string, 10, lambda _: None, lambda _: None)
        opened.append(registry)
        registry.connect(15)
        return registry

    yield open_on
    for registry in opened:
        registry.close()


def _swap(root: str, i: int, size: int) -> Transaction:
    """``size`` bytes written to a node (again and again alike, as a retried rewrite)."""
    return Transaction((SetData(f"{root}/n{i}", b"x" * size, -1),))


def _settled(
    write: Callable[[], list[WriteResult]], registry: ZooKeeperRegistry
) -> list[WriteResult]:
    """Write as the loop does: again after each reconnect, while an outcome is unknown."""
    deadline = time.monotonic() + 60
    while True:
        results = write()
        if all(r.outcome is not Outcome.UNKNOWN for r in results) or time.monotonic() > deadline:
            return results
        wait_until(lambda: registry.connected, 15)


def test_large_transactions_travel_in_batches_under_the_limit_and_one_too_large_alone(
    zookeeper: ZooKeeperServer, root: str, session_on: OpenSession
) -> None:
    """Thirty 30 KB transactions and one of 1.2 MB, sent together: the thirty are applied in
    requests the server accepts (no connection dropped), the large one is refused before it
    is sent, with why."""
    registry = session_on(zookeeper)
    registry.put({f"{root}/n{i}": b"" for i in [*range(30), 99]})
    found = registry.start([*(_swap(root, i, 30_000) for i in range(30)),
                            _swap(root, 99, 1_200_000)])()  # fmt: skip
    assert [r.outcome for r in found] == [Outcome.APPLIED] * 30 + [Outcome.TOO_LARGE]
    assert "jute.maxbuffer" in found[-1].error
    assert registry.connected


def test_a_batch_the_servers_drop_is_split_until_the_culprit_stands_alone(
    tmp_path: Path, session_on: OpenSession
) -> None:
    """Servers whose jute.maxbuffer is 200 KB, a sidecar that was told 1 MB: a batch of ten
    60 KB transactions is dropped; sent again, each travels alone and is applied; one of
    300 KB is dropped each time it travels alone, then left alone as too large."""
    with ZooKeeperServer(tmp_path / "zk", jute_maxbuffer=200_000) as server:
        registry = session_on(server)
        registry.put({f"/limits/n{i}": b"" for i in [*range(10), 99]})
        batch = [_swap("/limits", i, 60_000) for i in range(10)]
        first = registry.start([*batch, _swap("/limits", 99, 300_000)])()
        assert {r.outcome for r in first} == {Outcome.UNKNOWN}  # dropped: who knows
        again = _settled(lambda: registry.start([*batch, _swap("/limits", 99, 300_000)])(),
                         registry)  # fmt: skip
        assert [r.outcome for r in again] == [Outcome.APPLIED] * 10 + [Outcome.TOO_LARGE]


def test_put_writes_every_node_it_can(
    zookeeper: ZooKeeperServer, root: str, session_on: OpenSession,
    registry: KazooClient,
) -> None:  # fmt: skip
    """Nodes written together, one of them too large and one refused by its ACL: the others
    are written, and the two failures say why."""
    writer = session_on(zookeeper)
    registry.ensure_path(root)
    registry.create(f"{root}/locked", b"", acl=[make_acl("world", "anyone", read=True)])
    failed = writer.put({f"{root}/a": b"1", f"{root}/locked": b"2",
                         f"{root}/big": b"x" * 1_100_000, f"{root}/b": b"3"})  # fmt: skip
    assert set(failed) == {f"{root}/locked", f"{root}/big"}
    assert registry.get(f"{root}/a")[0] == b"1"
    assert registry.get(f"{root}/b")[0] == b"3"
    writer.apply_all([Transaction((Delete(f"{root}/a", -1),))])


def _provider_name(i: int, methods: int) -> str:
    """Provider ``i``'s URL: a service of its own (its version), since one session that
    registers one service again on one endpoint is re-exporting it, and its earlier
    registration's rewrite goes."""
    names = ",".join(f"method{m:04d}WithAVeryLongName" for m in range(methods))
    return java_url_encode(
        f"dubbo://{CONTAINER}:20880/{INTERFACE}?application=app-{i}&interface={INTERFACE}"
        f"&methods={names}&side=provider&version={i}.0.0"
    )


def test_long_urls_are_rewritten_beside_one_too_long_and_restored_after_a_restart(
    tmp_path: Path, zookeeper: ZooKeeperServer, root: str, providers: str,
    registry: KazooClient,
) -> None:  # fmt: skip
    """Thirty providers with 8 KB URLs start together beside one whose name is 500 KB: the
    thirty are rewritten, the one is left alone with one reason (its rewrite is larger than
    the servers take); the sidecar killed past its session timeout restores the thirty."""
    mapping = tmp_path / "ports.toml"
    mapping.write_text(f'addresses = ["{CONTAINER}"]\n[ports]\n20880 = 30007\n')
    argv = [
        *("--zookeeper", zookeeper.connect_string, "--root", root, "--docker-url", "none"),
        *("--static-file", str(mapping), "--advertise-host", HOST, "--listen", ""),
        *("--session-timeout", "3", "--state-file", str(tmp_path / "state.json")),
    ]
    provider = client_from(zookeeper.connect_string, HOST, timeout=30)
    sidecar = SidecarProcess(tmp_path / "sidecar.log", argv, env={"POD_UID": "limits"}).start()
    try:
        sidecar.wait_for_event("resync_done")
        names = [_provider_name(i, 230) for i in range(30)]
        assert all(7_000 < len(n) < 9_000 for n in names)
        huge = _provider_name(99, 16_500)
        assert len(huge) > 500_000
        for name in [huge, *names]:
            provider.create_async(f"{providers}/{name}", b"", ephemeral=True, makepath=True)
        wanted = {urls.parse(n).with_endpoint(Endpoint(HOST, 30007)) for n in names}
        wait_until(lambda: set(children(registry, providers)) == wanted | {huge}, 30,
                   message="the long URLs were not all rewritten")  # fmt: skip
        [refused] = sidecar.logged("write_too_large")
        assert refused["node"].startswith(providers)

        sidecar.kill()
        state = json.loads((tmp_path / "state.json").read_text())
        expire_session(zookeeper.connect_string, int(state["session_id"]),
                       bytes.fromhex(state["password"]))  # fmt: skip
        wait_until(lambda: set(children(registry, providers)) == {huge}, 15)
        sidecar = SidecarProcess(tmp_path / "again.log", argv, env={"POD_UID": "limits"}).start()
        wait_until(lambda: set(children(registry, providers)) == wanted | {huge}, 30,
                   message="not every rewrite was restored")  # fmt: skip
    finally:
        if sidecar.running:
            sidecar.kill()
        provider.stop()
        provider.close()
