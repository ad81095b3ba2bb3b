"""Loopback means "here" only where it was seen, across real network namespaces: host A runs
the ZooKeeper server and reaches it on loopback, and is the fleet's indexer; host B, behind
a bridge, has a container at the same address as a provider on A's bridge, whose session the
server sees from that address. B must not take A's provider for its own (A opted it out)."""

from __future__ import annotations

from pathlib import Path

import pytest
from kazoo.client import KazooClient

from testbed.dubbo_url import java_url_encode
from testbed.hosts import Host, Hosts
from testbed.polling import wait_until
from testbed.sidecar_process import SidecarProcess
from testbed.zookeeper import ZooKeeperServer

from .conftest import INTERFACE
from .helpers import children, registered_from

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _sidecar(
    log: Path, mapping: Path, connect: str, address: str, root: str, host: Host | None
) -> SidecarProcess:
    argv = [
        *("--zookeeper", connect, "--root", root, "--fleet", "--docker-url", "none"),
        *("--static-file", str(mapping), "--advertise-host", address, "--listen", ""),
        *("--session-timeout", "4", "--state-file", "", "--log-level", "debug"),
    ]
    prefix = Hosts.command(host, []) if host is not None else []
    return SidecarProcess(log, argv, env={"POD_UID": log.stem}, prefix=prefix).start()


def test_a_server_seen_on_loopback_proves_nothing_to_another_host(
    tmp_path: Path, root: str
) -> None:
    """A (the server's host, the indexer) reaches ZooKeeper on 127.0.0.1; a provider on A's
    bridge registers the address that B's container has too; A opted it out. B looks, asks
    the servers itself, which say the session comes from that address as the server at the
    bridge's address sees it, and leaves it alone."""
    providers = f"{root}/{INTERFACE}/providers"
    with Hosts() as hosts, ZooKeeperServer(tmp_path / "zk", bind="0.0.0.0") as server:
        b, container = hosts.ensure(2)  # B, and the namespace of A's provider
        port = server.port
        ports_a, ports_b = tmp_path / "a.toml", tmp_path / "b.toml"
        ports_a.write_text(f'addresses = ["{container.address}"]\n[ports]\n20880 = 31000\n'
                           '[labels]\n"dubbo-nat-sidecar.enable" = "false"\n')  # fmt: skip
        ports_b.write_text(f'addresses = ["{container.address}"]\n[ports]\n20880 = 31001\n')
        a = _sidecar(tmp_path / "host-a.log", ports_a, f"127.0.0.1:{port}", hosts.gateway,
                     root, None)  # fmt: skip
        sidecars = [a]
        try:
            a.wait_for_event("fleet_indexer_elected")
            sidecars.append(_sidecar(tmp_path / "host-b.log", ports_b, f"{hosts.gateway}:{port}",
                                     b.address, root, b))  # fmt: skip
            sidecars[1].wait_for_event("resync_done")
            name = java_url_encode(f"dubbo://{container.address}:20880/{INTERFACE}"
                                   f"?application=on-a&interface={INTERFACE}")  # fmt: skip
            with registered_from(container, f"{hosts.gateway}:{port}", f"{providers}/{name}"):

                def b_left_it_alone() -> list[str]:
                    return [
                        e["reason"]
                        for e in sidecars[1].events("left_alone")
                        if e["node"].startswith(f"{providers}/dubbo%3A%2F%2F{container.address}")
                    ]

                [reason] = wait_until(b_left_it_alone, 20, message="host B never looked")
                assert f"as server {hosts.gateway} sees it), not from this host" in reason
                observer = KazooClient(hosts=server.connect_string)
                observer.start(timeout=15)
                try:
                    assert children(observer, providers) == [name]
                finally:
                    observer.stop()
                    observer.close()
        finally:
            for sidecar in sidecars:
                if sidecar.running:
                    sidecar.kill()
