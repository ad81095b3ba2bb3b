"""A member whose work outgrows one ZooKeeper node: one host's provider registers INTERFACES
interfaces with long names, all at the container address every host has; the host's sidecar
rewrites them all, with --fleet (its work split over several nodes, under half the servers'
jute.maxbuffer each) against the same two hosts without it.

    python -m bench.big_work [--interfaces N]

Stand-in hosts are loopback addresses (127.0.0.2, .3: the providers' sessions connect from
their host's address, as the ownership proof needs). Prints, per mode, the seconds from the
first create to the last rewrite seen, the ratio fleet / watch, and the fleet's work nodes
for the member (count, largest, total bytes).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from kazoo.client import KazooClient

from bench.workload import ensure_paths
from sidecar.fleet.indexer import WORK
from sidecar.fleet.work import parse_part
from testbed.dubbo_url import java_url_encode
from testbed.sessions import client_from
from testbed.sidecar_process import SidecarProcess
from testbed.zookeeper import ZooKeeperServer

CONTAINER = "10.66.0.5"
HOSTS = ("127.0.0.2", "127.0.0.3")  # the indexer's host, and the member's with the providers
PIPELINE = 1000


def interface(i: int) -> str:
    return f"com.example.commerce.inventory.warehouse.fulfilment.Service{i:05d}"


def run(server: ZooKeeperServer, work: Path, count: int, fleet: bool) -> tuple[float, list[int]]:
    """Seconds from the first create to the last rewrite seen; the member's work node sizes."""
    root = f"/big-{'fleet' if fleet else 'watch'}"
    paths = [f"{root}/{interface(i)}/providers" for i in range(count)]
    admin = KazooClient(hosts=server.connect_string, timeout=30)
    admin.start(timeout=30)
    ensure_paths(admin, paths)
    sidecars = [_sidecar(server, work, root, i, fleet) for i in range(2)]
    provider = client_from(server.connect_string, HOSTS[1], timeout=30)
    try:
        for sidecar in sidecars:
            sidecar.wait_for_event("resync_done", timeout=300)
        started = time.perf_counter()
        pending = []
        for i, path in enumerate(paths):
            name = java_url_encode(f"dubbo://{CONTAINER}:20880/{interface(i)}?application=big"
                                   f"&interface={interface(i)}&side=provider")  # fmt: skip
            pending.append(provider.create_async(f"{path}/{name}", b"", ephemeral=True))
            if len(pending) >= PIPELINE:
                for request in pending:
                    request.get(timeout=60)
                pending = []
        for request in pending:
            request.get(timeout=60)
        while len(sidecars[1].events("rewrite")) < count:
            time.sleep(0.5)
        seconds = time.perf_counter() - started
        return seconds, _work_sizes(admin) if fleet else []
    finally:
        for sidecar in sidecars:
            sidecar.kill()
        provider.stop()
        provider.close()
        admin.stop()
        admin.close()


def _sidecar(server: ZooKeeperServer, work: Path, root: str, i: int, fleet: bool) -> SidecarProcess:
    mapping = work / f"ports-{root.strip('/')}-{i}.toml"
    mapping.write_text(f'addresses = ["{CONTAINER}"]\n[ports]\n20880 = {30000 + i}\n')
    return SidecarProcess(
        work / f"{root.strip('/')}-{i}.log",
        [
            *("--zookeeper", server.connect_string, "--root", root, "--docker-url", "none"),
            *("--static-file", str(mapping), "--advertise-host", HOSTS[i], "--listen", ""),
            *("--state-file", "", "--session-timeout", "30", "--probe-seconds", "0"),
            *(["--fleet"] if fleet else []),
        ],
        env={"POD_UID": f"big-{root.strip('/')}-{i}"},
    ).start()


def _work_sizes(admin: KazooClient) -> list[int]:
    """The sizes of the work nodes of the member that has the most paths."""
    best: list[int] = []
    for member in admin.get_children(WORK):
        first = admin.get(f"{WORK}/{member}")[0]
        parts = parse_part(first).parts
        sizes = [len(first)] + [len(admin.get(f"{WORK}/{member}/{n}")[0]) for n in range(1, parts)]
        if sum(sizes) > sum(best):
            best = sizes
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interfaces", type=int, default=20_000)
    count = parser.parse_args().interfaces
    with tempfile.TemporaryDirectory(prefix="big-work-") as tmp:
        work = Path(tmp)
        with ZooKeeperServer(work / "zk", heap="1g") as server:
            watch, _ = run(server, work, count, fleet=False)
            print(f"watch: {count} interfaces rewritten in {watch:.1f} s", flush=True)
            fleet, sizes = run(server, work, count, fleet=True)
            print(
                f"fleet: {count} interfaces rewritten in {fleet:.1f} s; the member's work in "
                f"{len(sizes)} nodes, largest {max(sizes)} bytes, {sum(sizes)} in all"
            )
            print(
                f"summary big_work_interfaces={count} big_work_ratio={fleet / watch:.2f} "
                f"big_work_nodes={len(sizes)} big_work_largest_bytes={max(sizes)}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
