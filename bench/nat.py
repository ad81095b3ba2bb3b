"""bench/run's NAT-table figures: on a stand-in node (a network namespace) whose pods'
hostPorts the CNI ``portmap`` plugin publishes, 1,000 of them in its NAT table:

- pickup: a pod's hostPort published (portmap ADD) -> its provider's rewrite seen, against
  a registration created with its port already published -> its rewrite seen (the same
  sidecar following a ZooKeeper watch), in the same run;
- idle CPU of the sidecar reading the NAT table, against the same sidecar with a static
  mapping instead (today's idle figure), each over the same seconds.
"""

from __future__ import annotations

import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from kazoo.client import KazooClient  # type: ignore[import-untyped,unused-ignore]

from bench.workload import client, name, percentile, process_cpu, wait_settled
from testbed.cni import Network, Pod, PortMapping, free_subnet
from testbed.dubbo_url import java_url_encode
from testbed.hosts import Host, Hosts
from testbed.polling import wait_until
from testbed.sidecar_process import SidecarProcess
from testbed.zookeeper import ZooKeeperServer

PROJECT = Path(__file__).resolve().parents[1]
INTERFACE = "com.example.NatService"
BULK_PORTS = 1000  # published by one pod: 31000-31999 -> 20000-20999
PROBE_PORT = 30500


@dataclass
class Figures:
    pickup: list[float]  # seconds, hostPort published -> rewrite seen
    watched: list[float]  # seconds, registration created -> rewrite seen
    idle_nat: float  # CPU seconds over the idle window
    idle_static: float
    idle_seconds: float
    ports: int  # published in the NAT table meanwhile


def run(work: Path, quick: bool, backend: str = "nft") -> Figures:
    """The figures, with portmap writing through ``backend`` (``nft`` or ``legacy``)."""
    rounds, idle, ports = (3, 20.0, BULK_PORTS // 10) if quick else (10, 60.0, BULK_PORTS)
    with ExitStack() as stack:
        hosts = stack.enter_context(Hosts())
        [node] = hosts.ensure(1)
        server = stack.enter_context(ZooKeeperServer(work / "zk-nat", bind="0.0.0.0"))
        connect = f"{hosts.gateway}:{server.port}"
        network = stack.enter_context(
            Network(free_subnet(), ["ip", "netns", "exec", node.netns], backend)
        )
        bulk = network.pod([PortMapping(31000 + i, 20000 + i) for i in range(ports)])
        stack.callback(bulk.close)
        bulk.start()
        zk = client(f"127.0.0.1:{server.port}")
        stack.callback(zk.stop)
        pickup, watched = [], []
        sidecar = _sidecar(work / "nat.log", node, connect, "/nat", ["--nat-table"])
        stack.callback(sidecar.kill)
        sidecar.start().wait_for_event("resync_done", timeout=60)
        for i in range(rounds):
            print(f"nat: round {i + 1}/{rounds}", file=sys.stderr, flush=True)
            pickup.append(_pickup(network, zk, node, connect, "/nat", published_first=False))
            watched.append(_pickup(network, zk, node, connect, "/nat", published_first=True))
        idle_nat = _idle(sidecar, idle)
        sidecar.kill()
        mapping = work / "nat-static.toml"
        mapping.write_text("[ports]\n" + "".join(f"{20000 + i} = {31000 + i}\n"
                                                 for i in range(ports)))  # fmt: skip
        static = _sidecar(work / "static.log", node, connect, "/nat",
                          ["--static-file", str(mapping)])  # fmt: skip
        stack.callback(static.kill)
        static.start().wait_for_event("resync_done", timeout=60)
        idle_static = _idle(static, idle)
    return Figures(pickup, watched, idle_nat, idle_static, idle, ports)


def rows(figures: Figures) -> list[tuple[str, float, float | None, str]]:
    """(figure, value, baseline, unit) rows for bench/run's table."""
    p50 = (percentile(figures.pickup, 50) * 1000, percentile(figures.watched, 50) * 1000)
    p99 = (percentile(figures.pickup, 99) * 1000, percentile(figures.watched, 99) * 1000)
    return [
        ("NAT: hostPort published -> rewrite p50", *p50, "ms"),
        ("NAT: hostPort published -> rewrite p99", *p99, "ms"),
        (f"NAT: idle CPU, {figures.ports} ports, {figures.idle_seconds:.0f} s", figures.idle_nat,
         figures.idle_static, "s"),
    ]  # fmt: skip


def summary(figures: Figures) -> dict[str, float]:
    return {
        "nat_pickup_p99_ratio": percentile(figures.pickup, 99) / percentile(figures.watched, 99),
        "nat_pickup_p99_s": percentile(figures.pickup, 99),
        "nat_idle_cpu_ratio": figures.idle_nat / max(figures.idle_static, 0.001),
    }


def _sidecar(log: Path, node: Host, connect: str, root: str, extra: list[str]) -> SidecarProcess:
    argv = [
        *("--zookeeper", connect, "--root", root, "--docker-url", "none", "--listen", ""),
        *("--advertise-host", node.address, "--state-file", "", "--probe-seconds", "0"),
        *("--session-timeout", "30", *extra),
    ]
    return SidecarProcess(log, argv, prefix=Hosts.command(node, []))


def _pickup(
    network: Network, zk: KazooClient, node: Host, connect: str, root: str, published_first: bool
) -> float:
    """Seconds from the port published (the portmap call begun), or, published first, from
    the registration created (its provider told), to the rewrite seen by a client."""
    pod = network.pod([PortMapping(PROBE_PORT, 20880)])
    pod.start(publish=published_first)
    path = f"{root}/{INTERFACE}/providers"
    zk.ensure_path(path)
    rewritten = java_url_encode(f"dubbo://{node.address}:{PROBE_PORT}/{INTERFACE}")
    holder = None
    try:
        holder = _register(pod, connect, f"{path}/{name(pod.address, 20880, INTERFACE)}")
        started = time.perf_counter()  # the registration created, or the plugin called:
        if not published_first:
            pod.publish()
        wait_until(lambda: any(c.startswith(rewritten) for c in zk.get_children(path)), 30,
                   interval=0.005)  # fmt: skip
        return time.perf_counter() - started
    finally:
        pod.close()  # its rule gone, the rewrite goes
        wait_until(lambda: not any(c.startswith(rewritten) for c in zk.get_children(path)), 30)
        if holder is not None:
            holder.communicate("", timeout=30)


# Registers argv[2] (ephemeral) through argv[1], says so, and keeps it until its input ends.
_HOLD = """
import sys
from kazoo.client import KazooClient
zk = KazooClient(hosts=sys.argv[1]); zk.start(timeout=30)
zk.create(sys.argv[2], b"", ephemeral=True, makepath=True)
print("registered", flush=True)
sys.stdin.read()
zk.stop(); zk.close()
"""


def _register(pod: Pod, connect: str, path: str) -> subprocess.Popen[str]:
    holder = subprocess.Popen(pod.command([sys.executable, "-c", _HOLD, connect, path]),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True,
                              cwd=PROJECT)  # fmt: skip
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "registered"
    return holder


def _idle(sidecar: SidecarProcess, seconds: float) -> float:
    wait_settled(sidecar.pid)
    before = process_cpu(sidecar.pid)
    time.sleep(seconds)  # measuring idle CPU: nothing to synchronise with
    return process_cpu(sidecar.pid) - before
