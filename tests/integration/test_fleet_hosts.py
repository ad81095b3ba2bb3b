"""Integration tests of the stand-in hosts bench/fleet runs sidecars on (testbed/hosts.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from subprocess import PIPE

import pytest

from bench.fleet_lab import CONTAINER_ADDRESS, Fleet, node_name, rewritten_for
from bench.workload import FIRST_PORT, client, ensure_paths
from sidecar.registry.sessions import parse_cons
from testbed.hosts import Hosts
from testbed.polling import wait_until
from testbed.zookeeper import ZooKeeperServer

pytestmark = pytest.mark.integration

# Connects, says its session and hostname, and keeps the session until its input ends.
_CLIENT = """
import socket, sys
from kazoo.client import KazooClient
zk = KazooClient(hosts=sys.argv[1]); zk.start(timeout=30)
print(hex(zk.client_id[0]), socket.gethostname(), flush=True)
sys.stdin.read()
zk.stop(); zk.close()
"""


@pytest.mark.timeout(90)
def test_each_host_reaches_zookeeper_from_its_own_address_with_its_own_name(
    tmp_path: Path,
) -> None:
    """ZooKeeper sees each host's session come from that host's address (what the ownership
    proof checks), each host has its own hostname, and nothing is left after close."""
    with Hosts() as hosts, ZooKeeperServer(tmp_path / "zk", bind=hosts.gateway) as server:
        argv = [sys.executable, "-c", _CLIENT, server.connect_string]
        clients = [
            subprocess.Popen(Hosts.command(host, argv), stdin=PIPE, stdout=PIPE, text=True)
            for host in hosts.ensure(2)
        ]
        try:
            said = [c.stdout.readline().split() for c in clients if c.stdout is not None]
            origins = parse_cons(server.four_letter("cons"))
        finally:
            for c in clients:
                c.communicate("", timeout=30)
        assert [name for _, name in said] == ["host-0", "host-1"]
        assert [origins[int(session, 16)] for session, _ in said] == [
            host.address for host in hosts.hosts
        ]
        names = [host.netns for host in hosts.hosts]
    assert not set(names) & set(subprocess.run(["ip", "netns", "list"], capture_output=True,
                                               text=True, check=True).stdout.split())  # fmt: skip


@pytest.mark.timeout(120)
@pytest.mark.parametrize("extra", [(), ("--fleet",)], ids=["watch", "fleet"])
def test_each_hosts_sidecar_rewrites_only_its_own_hosts_registration(
    tmp_path: Path, extra: tuple[str, ...]
) -> None:
    """Two hosts' providers register the same container endpoint for one interface: each
    host's sidecar rewrites its own host's registration, at its own address, and not the
    other's; also when the fleet index routes the work (the indexer tells the hosts apart by
    where each session connects from)."""
    root = "/fleet-test"
    parent = f"{root}/svc0/providers"
    with Hosts() as hosts, ZooKeeperServer(tmp_path / "zk", bind=hosts.gateway) as server:
        observer = client(server.connect_string)
        ensure_paths(observer, [parent, f"{root}-services"])
        with Fleet(hosts, server.connect_string, 2, root, tmp_path / "fleet", extra) as fleet:
            fleet.start_sidecars()
            fleet.wait_ready(timeout=60)
            names = {
                i: node_name(CONTAINER_ADDRESS, FIRST_PORT, "svc0", f"app-{i}") for i in (0, 1)
            }
            fleet.create({i: [f"{parent}/{name}"] for i, name in names.items()})
            wanted = {rewritten_for(fleet.hosts[i], name) for i, name in names.items()}

            def rewritten() -> bool:
                return set(observer.get_children(parent)) == wanted

            wait_until(rewritten, 30, message=f"not {wanted}")
        observer.stop()
        observer.close()
