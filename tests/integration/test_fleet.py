"""A fleet of three sidecars (--fleet) on a real ZooKeeper, each standing for a host: every
host's provider connects from its own address, and their containers all have the same
address (as every default bridge's first container does). One elected indexer watches the
registry; each host's sidecar rewrites its own provider only; the indexer's death moves the
work to another member."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from sidecar import urls
from sidecar.model import Endpoint
from testbed.dubbo_url import java_url_encode
from testbed.engine import DockerEngine
from testbed.polling import wait_until
from testbed.sessions import client_from
from testbed.zookeeper import ZooKeeperServer

from . import stand_ins
from .helpers import children, one_shot
from .stand_ins import CONTAINER, StandIns, host_address

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

# The work of a dead indexer resumes within a second of its session's end (the outcome);
# the bound leaves half a second for a loaded test machine.
TAKEOVER_SECONDS = 1.5


@pytest.fixture
def hosts(tmp_path: Path, zookeeper: ZooKeeperServer, root: str) -> Iterator[StandIns]:
    """Stand-in hosts (tests/integration/stand_ins.py) whose sidecars run with --fleet."""
    stand_ins = StandIns(tmp_path, zookeeper, root, ["--fleet"])
    try:
        yield stand_ins
    finally:
        stand_ins.close()


def register(zookeeper: ZooKeeperServer, root: str, i: int, app: str) -> tuple[KazooClient, str]:
    """Host ``i``'s provider: a session from the host's address, its container's address."""
    return stand_ins.register(zookeeper, root, host_address(i), app, 30000 + i)


def test_each_host_rewrites_its_own_and_one_sidecar_watches_for_all(
    zookeeper: ZooKeeperServer,
    registry: KazooClient,
    root: str,
    providers: str,
    hosts: StandIns,
    tmp_path: Path,
    engine: DockerEngine,
) -> None:
    """Same container address on three hosts: each provider is rewritten by its own host's
    sidecar to its own host's address; only the indexer watches registry paths; status
    --fleet lists the members; when the indexer dies another member takes over."""
    sidecars = [hosts.start(i) for i in range(3)]
    clients = []
    try:
        expected = set()
        for i in range(3):
            client, rewritten = register(zookeeper, root, i, f"app-{i}")
            clients.append(client)
            expected.add(rewritten)
        wait_until(lambda: set(children(registry, providers)) == expected, 15,
                   message=f"not each host's own: {children(registry, providers)}")  # fmt: skip

        elected = [s for s in sidecars if s.events("fleet_indexer_elected")]
        assert len(elected) == 1
        [indexer] = elected

        # A new interface: one more watch for the whole fleet (the indexer's), not one each.
        watches = _settled_watch_count(zookeeper)
        other = "com.example.OtherService"
        client = client_from(zookeeper.connect_string, host_address(2), timeout=30)
        clients.append(client)
        name = java_url_encode(f"dubbo://{CONTAINER}:20880/{other}?application=other"
                               f"&interface={other}&side=provider")  # fmt: skip
        client.create(f"{root}/{other}/providers/{name}", b"", ephemeral=True, makepath=True)
        rewritten = urls.parse(name).with_endpoint(Endpoint(host_address(2), 30002))
        wait_until(lambda: children(registry, f"{root}/{other}/providers") == [rewritten], 15)
        assert _settled_watch_count(zookeeper) - watches == 1

        shown = one_shot("status", zookeeper.connect_string, root, engine.url, "--fleet")
        rows = [r for r in shown.stdout.splitlines()[1:] if r.strip()]
        assert len(rows) == 3
        assert sum(" indexer " in r for r in rows) == 1

        # The indexer dies and its session ends; a registration made meanwhile is rewritten
        # within a second of that end: another member is elected and indexes the registry.
        survivor = next(i for i, s in enumerate(sidecars) if s is not indexer)
        client, rewritten = register(zookeeper, root, survivor, "later")
        clients.append(client)
        hosts.end_session(sidecars.index(indexer), indexer)
        ended = time.monotonic()
        wait_until(lambda: rewritten in children(registry, providers), 20,
                   message="no indexer took over")  # fmt: skip
        assert time.monotonic() - ended <= TAKEOVER_SECONDS
    finally:
        for client in clients:
            client.stop()
            client.close()


def _settled_watch_count(zookeeper: ZooKeeperServer) -> int:
    """The watches the server holds once the count stays put for half a second (a watch
    that just fired is set again by the next read)."""
    seen: list[int] = []

    def settled() -> int | None:
        seen.append(_watch_count(zookeeper))
        return seen[-1] if len(seen) > 1 and seen[-1] == seen[-2] else None

    return wait_until(settled, 10, interval=0.5, message=f"watch count never settled: {seen}")


def _watch_count(zookeeper: ZooKeeperServer) -> int:
    """Every watch the server holds, child watches included (``mntr``'s zk_watch_count)."""
    for line in zookeeper.four_letter("mntr").splitlines():
        key, _, value = line.partition("\t")
        if key == "zk_watch_count":
            return int(value)
    raise AssertionError("mntr says no zk_watch_count")
