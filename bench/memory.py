"""Memory at 100,000 registrations with 1 KB names: what the parse and plan path keeps, and
what a whole sidecar process holds.

By default: plans 100,000 nodes with 1 KB names (half of them other hosts' rewrites, whose
data is a marker holding the 1 KB original) in paths of 100, as a full resync reads them,
dropping each path's nodes after planning it, as the registry does for other hosts'
registrations. What the process still holds afterwards is what planning kept (nothing, by
design: parsed names go with their read). No
ZooKeeper or Docker needed. With ``--sidecar``: a real ZooKeeper holding those nodes (and
an empty root, for the baseline), the same mix in paths of 5, and the sidecar process
reading them (static mapping, no Docker); its peak and current RSS after the first full
resync, and after a second one.

    .venv/bin/python -m bench.memory [--nodes 100000] [--sidecar]

Figures are ratios against the same run's baseline (the process before planning, or a
sidecar on an empty registry), as the machine is noisy; the last line is machine-readable.
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time
from pathlib import Path

from bench.workload import client, ensure_paths, process_status
from sidecar.mapping import ContainerIndex
from sidecar.model import Container, Endpoint, PublishedPort, RegistryNode
from sidecar.ownership import LocalAddresses, Marker, Ownership
from sidecar.plan import Identity, PathView, claims_in, plan_path
from testbed.dubbo_url import java_url_encode
from testbed.sidecar_process import SidecarProcess
from testbed.zookeeper import ZooKeeperServer

PER_PATH = 100
NAME_BYTES = 1024


def rss_mib() -> float:
    return process_status(os.getpid(), "VmRSS") / 1024


def node_name(index: int, host: str) -> str:
    """A provider name of about NAME_BYTES, unique per index, as Dubbo encodes it."""
    url = (
        f"dubbo://{host}:20880/com.example.Service{index}?anyhost=true&application=bench"
        f"&interface=com.example.Service{index}&side=provider&timestamp={index}&methods="
    )
    encoded = java_url_encode(url)
    return encoded + "m" * (NAME_BYTES - len(encoded))


def path_nodes(path_index: int) -> list[RegistryNode]:
    """One providers path: originals of other hosts' containers and other hosts' rewrites."""
    parent = f"/dubbo/com.example.Service{path_index}/providers"
    nodes = []
    for i in range(PER_PATH):
        index = path_index * PER_PATH + i
        host = f"10.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}"
        if i % 2:
            original = node_name(index, host)
            marker = Marker(original, Endpoint(host, 20880), "c" * 64, "ENGINE-B", index)
            nodes.append(RegistryNode(parent, node_name(index, "192.0.2.77"),
                                      marker.encode(), index, 0))  # fmt: skip
        else:
            nodes.append(RegistryNode(parent, node_name(index, host), b"10.9.9.9", index, 0))
    return nodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--sidecar", action="store_true", help="measure a sidecar process")
    args = parser.parse_args()
    if args.sidecar:
        sidecar_footprint(args.nodes)
    else:
        parse_and_plan(args.nodes // PER_PATH)


def parse_and_plan(paths: int) -> None:
    me = Identity(session=1, engine="ENGINE-A", advertise_host="192.0.2.10")
    containers = ContainerIndex(
        [
            Container(
                "a" * 64,
                "local",
                "bridge",
                ("172.17.0.5",),
                (PublishedPort(20880, "0.0.0.0", 32768),),
            )
        ]
    )
    local = LocalAddresses(frozenset({"192.0.2.10"}))
    gc.collect()
    baseline = peak = rss_mib()
    seconds = 0.0
    for path_index in range(paths):
        view = PathView(f"/dubbo/com.example.Service{path_index}/providers", path_nodes(path_index))
        started = time.perf_counter()
        plan_path(view, containers, me, Ownership(None, local, claims_in(view)))
        seconds += time.perf_counter() - started
        peak = max(peak, rss_mib())
    gc.collect()
    kept = rss_mib() - baseline
    planned_mib = paths * PER_PATH * NAME_BYTES * 1.5 / 2**20  # names, and markers' originals
    print(f"nodes planned        {paths * PER_PATH:>10,} ({planned_mib:,.0f} MiB of names)")
    print(f"baseline RSS         {baseline:>10.1f} MiB")
    print(f"peak RSS             {peak:>10.1f} MiB")
    print(f"kept after planning  {kept:>10.1f} MiB  ({kept / planned_mib:.2f} of the names)")
    print(f"planning time        {seconds:>10.1f} s  (claims and plan, names made apart)")
    print(
        f"summary nodes={paths * PER_PATH} baseline_mb={baseline:.1f} peak_mb={peak:.1f} "
        f"kept_mb={kept:.1f} kept_ratio={kept / planned_mib:.3f} plan_s={seconds:.1f}"
    )


def sidecar_footprint(nodes: int) -> None:
    with tempfile.TemporaryDirectory() as work, ZooKeeperServer(Path(work) / "zk", heap="1g") as zk:
        load = client(zk.connect_string)
        paths = [f"/big/svc{i}/providers" for i in range(nodes // 5)]
        ensure_paths(load, [*paths, "/empty/svc/providers"])
        print(f"creating {nodes:,} nodes of {NAME_BYTES} bytes", flush=True)
        pending = []
        for index, path in enumerate(paths):
            for node in path_nodes(index)[:5]:
                pending.append(load.create_async(f"{path}/{node.name}", node.data))
                if len(pending) >= 1000:
                    for request in pending:
                        request.get(timeout=60)
                    pending.clear()
        for request in pending:
            request.get(timeout=60)
        load.stop()
        load.close()
        empty = _resident(Path(work), zk.connect_string, "/empty", resyncs=1)
        full = _resident(Path(work), zk.connect_string, "/big", resyncs=2)
    print(f"sidecar, empty registry     peak {empty[0]:7.1f} MiB  now {empty[1]:7.1f} MiB")
    print(f"sidecar, {nodes:,} nodes  peak {full[0]:7.1f} MiB  now {full[1]:7.1f} MiB  "
          f"({full[0] / empty[0]:.1f} x the empty registry's peak)")  # fmt: skip
    print(f"summary sidecar_nodes={nodes} empty_peak_mb={empty[0]:.1f} peak_mb={full[0]:.1f} "
          f"rss_mb={full[1]:.1f} peak_ratio={full[0] / empty[0]:.2f}")  # fmt: skip


def _resident(work: Path, connect: str, root: str, resyncs: int) -> tuple[float, float]:
    """Peak and current RSS (MiB) of a sidecar on ``root`` after ``resyncs`` full resyncs
    (a periodic one every 20 s after the first)."""
    sidecar = SidecarProcess(
        work / f"sidecar{root.replace('/', '-')}.log",
        [*("--zookeeper", connect, "--root", root, "--docker-url", "none"),
         *("--static-ports", "20880:30880", "--advertise-host", "127.0.0.1"),
         *("--listen", "", "--state-file", "", "--resync-seconds", "20")],
    ).start()  # fmt: skip
    try:
        for count in range(1, resyncs + 1):
            sidecar.wait_for_event("resync_done", count=count, timeout=900)
        peak, now = (process_status(sidecar.pid, f) / 1024 for f in ("VmHWM", "VmRSS"))
        return peak, now
    finally:
        sidecar.kill()


if __name__ == "__main__":
    main()
