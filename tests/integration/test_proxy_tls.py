"""Proxy mode adds TLS for the app: apps speaking plaintext to the proxy on loopback (kazoo,
the ZooKeeper Java client, Curator) reach a TLS-only ensemble that requires client
certificates, through a server failover and a proxy restart that keep the session; an app
that speaks TLS itself is refused plainly, in the logs and on /readyz."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from sidecar.proxy import ProxyServer
from sidecar.tls import ClientTls, TlsFiles
from testbed.curator import CuratorPeer, dubbo_metadata
from testbed.ensemble import ZooKeeperEnsemble
from testbed.polling import wait_until
from testbed.tls import ServerTls
from testbed.zookeeper import ZooKeeperServer

from .proxy_helpers import (
    ADDRESS,
    ADVERTISED,
    PORTS,
    Events,
    client_of,
    node_name,
    proxy_for,
    published,
)
from .test_proxy import JAVA_CLASSPATH

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]


class Proxies:
    """The proxy of a test, started again on the same port when asked; stopped at the end."""

    def __init__(self, ensemble: ZooKeeperEnsemble, pki: ServerTls, services: str) -> None:
        self.events = Events()
        self._servers = [("127.0.0.1", server.port) for server in ensemble.servers]
        self._tls = ClientTls(TlsFiles(pki.ca, pki.client.cert, pki.client.key))
        self._services = services
        self.proxy = self._start(0)

    def restart(self) -> None:
        port = self.proxy.address[1]
        self.proxy.stop()
        self.proxy = self._start(port)

    def _start(self, port: int) -> ProxyServer:
        return proxy_for(self._servers, self.events, port=port, services_root=self._services,
                         tls=self._tls)  # fmt: skip


@pytest.fixture
def proxies(tls_ensemble: ZooKeeperEnsemble, pki: ServerTls, root: str) -> Iterator[Proxies]:
    started = Proxies(tls_ensemble, pki, f"{root}-services")
    try:
        yield started
    finally:
        started.proxy.stop()


def serving(ensemble: ZooKeeperEnsemble, session: int) -> ZooKeeperServer:
    """The member the session is connected to (its `cons`, over TLS)."""
    marker = f"sid=0x{session:x},"
    running = [server for server in ensemble.servers if server.running]
    return wait_until(
        lambda: next((s for s in running if marker in s.four_letter("cons")), None),
        10, message=f"session 0x{session:x} on no server", retry_on=(OSError,),
    )  # fmt: skip


def test_kazoo_in_plaintext_keeps_its_session_through_a_failover_and_a_proxy_restart(
    proxies: Proxies,
    tls_ensemble: ZooKeeperEnsemble,
    tls_registry: KazooClient,
    providers: str,
) -> None:
    """kazoo with no TLS settings registers through the proxy: the node is published on the
    TLS ensemble, owned by the app's session. The server under it stops, then the proxy
    restarts: the app reconnects each time in the same session, and its node stays."""
    app = client_of(proxies.proxy)
    try:
        mine = f"{providers}/{node_name()}"
        assert app.create(mine, ADDRESS.encode(), ephemeral=True, makepath=True) == mine
        node = f"{providers}/{published(node_name())}"
        session = app.client_id[0]
        tls_registry.sync(providers)  # the test's client may be on another server, behind
        assert tls_registry.get(node)[1].ephemeralOwner == session

        server = serving(tls_ensemble, session)
        server.stop()
        try:
            wait_until(lambda: serving(tls_ensemble, session) is not server, 30,
                       message="the app did not move to another server")  # fmt: skip
        finally:
            server.start(wait=False)
            tls_ensemble.wait_ready()
        proxies.restart()
        wait_until(lambda: app.connected and app.exists(mine), 30, retry_on=(Exception,),
                   message="the app did not reconnect through the new proxy")  # fmt: skip
        assert app.client_id[0] == session
        tls_registry.sync(providers)
        assert tls_registry.get(node)[1].ephemeralOwner == session
    finally:
        app.stop()
        app.close()


def test_the_java_client_and_curator_in_plaintext_reach_the_tls_ensemble(
    proxies: Proxies,
    tls_ensemble: ZooKeeperEnsemble,
    tls_registry: KazooClient,
    providers: str,
    root: str,
    curator_classes: Path,
    tmp_path: Path,
) -> None:
    """The ZooKeeper Java client (ZooKeeperMain) and Curator's ServiceDiscovery, without any
    TLS settings, register through the proxy; both registrations are published, and Curator
    keeps its session and its instance through a proxy restart and a server failover."""
    port = proxies.proxy.address[1]
    tls_registry.ensure_path(providers)
    mine = f"{providers}/{node_name()}"
    done = subprocess.run(
        ["java", "-cp", JAVA_CLASSPATH, "org.apache.zookeeper.ZooKeeperMain",
         "-server", f"127.0.0.1:{port}", "create", mine, ADDRESS],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # The test's client may be on another server than the proxy's, a moment behind.
    wait_until(lambda: tls_registry.get_children(providers) == [published(node_name())], 10,
               message="the Java client's node is not published")  # fmt: skip

    services = f"{root}-services"
    with CuratorPeer.on_host(
        curator_classes, f"127.0.0.1:{port}", base_path=services, stderr=tmp_path / "peer.err"
    ) as peer:
        peer.register("shop", ADDRESS, 20880, dubbo_metadata(20880, "r1"))
        instance = [f"{ADVERTISED}:{PORTS[20880]}"]
        listed = f"{services}/shop"
        wait_until(lambda: tls_registry.get_children(listed) == instance, 10,
                   message="no published instance", retry_on=(NoNodeError,))  # fmt: skip
        session = peer.session
        proxies.restart()
        peer.wait_for_event("connection", state="RECONNECTED", timeout=30)
        assert peer.session == session
        wait_until(lambda: tls_registry.get_children(listed) == instance, 10,
                   message="the instance is gone after the restart")  # fmt: skip

        def reconnections() -> int:
            return sum(e.get("state") == "RECONNECTED" for e in peer.events("connection"))

        before = reconnections()
        server = serving(tls_ensemble, session[0])
        server.stop()
        try:
            wait_until(lambda: reconnections() > before, 30,
                       message="Curator did not move to another server")  # fmt: skip
        finally:
            server.start(wait=False)
            tls_ensemble.wait_ready()
        assert peer.session == session
        wait_until(lambda: tls_registry.get_children(listed) == instance, 10,
                   message="the instance is gone after the failover")  # fmt: skip


def test_an_app_speaking_tls_to_the_proxy_is_refused_plainly(
    proxies: Proxies, pki: ServerTls
) -> None:
    """kazoo with TLS settings of its own, pointed at the proxy, is refused at once: the
    proxy logs `proxy_client_tls` and /readyz says why until an app connects in plaintext."""
    port = proxies.proxy.address[1]
    app = KazooClient(hosts=f"127.0.0.1:{port}", timeout=4.0, **pki.kazoo_options())
    with pytest.raises(Exception):  # noqa: B017, PT011 - kazoo's timeout or SSL error
        app.start(timeout=3)
    app.stop()
    app.close()
    assert proxies.events.named("proxy_client_tls")
    assert any("spoke TLS" in reason for reason in proxies.proxy.not_ready())
    plain = client_of(proxies.proxy)
    plain.stop()
    plain.close()
    wait_until(lambda: not proxies.proxy.not_ready(), 5, message="still not ready")
