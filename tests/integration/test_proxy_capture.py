"""Transparent capture over IPv6, in a network namespace the test creates: an app that
reaches ZooKeeper at an IPv6 address is redirected (ip6tables) to the proxy, which relays to
the server the app dialled and publishes its registration."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from testbed.dubbo_url import provider_node_name, provider_url
from testbed.hosts import Host, Hosts
from testbed.polling import wait_until
from testbed.proxy_process import ProxyProcess
from testbed.zookeeper import ZooKeeperServer

from .conftest import INTERFACE
from .helpers import children, registered_from

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

BRIDGE_V6, APP_V6 = "fd5e:c1de::1", "fd5e:c1de::2"  # a unique local prefix of the test's own


def _ipv6(hosts: Hosts, host: Host) -> None:
    """IPv6 between the bridge and ``host``, usable at once (no duplicate address check)."""
    for argv in (
        ["ip", "addr", "add", f"{BRIDGE_V6}/64", "dev", hosts.bridge, "nodad"],
        ["ip", "-n", host.netns, "addr", "add", f"{APP_V6}/64", "dev", "eth0", "nodad"],
    ):
        subprocess.run(argv, check=True, capture_output=True, timeout=30)


def test_an_app_reaching_zookeeper_over_ipv6_is_captured(tmp_path: Path, root: str) -> None:
    """The app dials ZooKeeper at an IPv6 address, unaware of the proxy; its connection is
    relayed to that address, and its registration reaches the registry published."""
    providers = f"{root}/{INTERFACE}/providers"
    with Hosts() as hosts, ZooKeeperServer(tmp_path / "zk", bind="::") as server:
        [host] = hosts.ensure(1)
        _ipv6(hosts, host)
        upstream = f"[{BRIDGE_V6}]:{server.port}"
        proxy = ProxyProcess(
            tmp_path / "proxy.log",
            ["--listen", "127.0.0.1:15181", "--capture", str(server.port),
             "--static-ports", "20880:31000", "--address", host.address],
            prefix=Hosts.command(host, []),
        ).start()  # fmt: skip
        try:
            listening = proxy.wait_for_event("proxy_listening")
            assert listening["ipv6"] is True
            name = provider_node_name(provider_url("dubbo", host.address, 20880, INTERFACE, "v6"))
            with registered_from(host, upstream, f"{providers}/{name}"):
                [opened] = proxy.events("proxy_connection_opened")
                assert opened["upstream"] == upstream
                observer = KazooClient(hosts=server.connect_string)
                observer.start(timeout=15)
                try:
                    wait_until(lambda: children(observer, providers) != [], 10)
                    [stored] = children(observer, providers)
                    assert "127.0.0.1%3A31000" in stored
                finally:
                    observer.stop()
                    observer.close()
        finally:
            if proxy.running:
                proxy.terminate()
