"""Proxy mode keeps the app's own session: through a ZooKeeper server dying under it and
through the proxy being killed and started again, the app's registration never disappears."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient, KazooState

from testbed.ensemble import ZooKeeperEnsemble
from testbed.polling import free_port, wait_until
from testbed.proxy_process import ProxyProcess
from testbed.zookeeper import ZooKeeperServer

from .conftest import INTERFACE
from .proxy_helpers import ADDRESS, PORTS, Events, Listings, node_name, proxy_for, published

pytestmark = [pytest.mark.integration]


@pytest.fixture
def ensemble(tmp_path: Path) -> Iterator[ZooKeeperEnsemble]:
    with ZooKeeperEnsemble(tmp_path / "ensemble") as servers:
        yield servers


def connected_again(client: KazooClient, session: int) -> bool:
    return bool(client.state == KazooState.CONNECTED and client.client_id[0] == session)


@pytest.mark.timeout(240)
def test_session_survives_the_server_it_is_on_dying(ensemble: ZooKeeperEnsemble) -> None:
    """Kill the server the app's connection goes to: the proxy closes the app's connection,
    the app reconnects through it to another server with the same session, and a direct
    consumer sees its registration at every moment."""
    events = Events()
    proxy = proxy_for([("127.0.0.1", s.port) for s in ensemble.servers], events)
    app = KazooClient(hosts=f"127.0.0.1:{proxy.address[1]}", timeout=10.0)
    direct = KazooClient(hosts=ensemble.connect_string, timeout=10.0)
    try:
        app.start(timeout=30)
        direct.start(timeout=30)
        providers = f"/dubbo/{INTERFACE}/providers"
        listings = Listings(direct, providers)
        app.create(f"{providers}/{node_name()}", ADDRESS.encode(), ephemeral=True)
        listings.wait_for(published(node_name()))
        session = app.client_id[0]
        [opened] = events.named("proxy_connection_opened")
        [server] = [s for s in ensemble.servers if s.connect_string == opened["upstream"]]

        server.kill()

        wait_until(lambda: len(events.named("proxy_connection_opened")) >= 2, 60)
        wait_until(lambda: connected_again(app, session), 60, message="app not reconnected")
        assert events.named("proxy_connection_opened")[-1]["upstream"] != opened["upstream"]
        assert direct.exists(f"{providers}/{published(node_name())}").ephemeralOwner == session
        assert all(
            published(node_name()) in seen for seen in listings.since(published(node_name()))
        )
    finally:
        for client in (app, direct):
            client.stop()
            client.close()
        proxy.stop()


@pytest.mark.timeout(120)
def test_session_survives_a_proxy_kill_and_restart(
    zookeeper: ZooKeeperServer, registry: KazooClient, providers: str, tmp_path: Path
) -> None:
    """SIGKILL the proxy and start it again on its port: the app reconnects with the same
    session, its registration never disappears, and its requests are rewritten again (its
    own name reaches the published node)."""
    port = free_port("127.0.0.1")
    args = [
        *("--listen", f"127.0.0.1:{port}", "--zookeeper", zookeeper.connect_string),
        *("--address", ADDRESS, *(f"--static-ports={c}:{h}" for c, h in PORTS.items())),
    ]
    proxies = [ProxyProcess(tmp_path / "proxy-1.log", args).start()]
    app = KazooClient(hosts=f"127.0.0.1:{port}", timeout=10.0)
    try:
        proxies[0].wait_for_event("proxy_listening")
        app.start(timeout=15)
        listings = Listings(registry, providers)
        mine = f"{providers}/{node_name()}"
        app.create(mine, ADDRESS.encode(), ephemeral=True)
        listings.wait_for(published(node_name()))
        session = app.client_id[0]

        proxies[0].kill()
        proxies.append(ProxyProcess(tmp_path / "proxy-2.log", args).start())

        proxies[1].wait_for_event("proxy_connection_opened", timeout=30)
        wait_until(lambda: connected_again(app, session), 30, message="app not reconnected")
        assert app.exists(mine).ephemeralOwner == session
        assert all(
            published(node_name()) in seen for seen in listings.since(published(node_name()))
        )
        assert registry.get_children(providers) == [published(node_name())]
    finally:
        app.stop()
        app.close()
        for proxy in proxies:
            if proxy.running:
                proxy.kill()
