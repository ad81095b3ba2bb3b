"""The ZooKeeper client's own cost: CPU per pipelined read, the sidecar's registry against
kazoo's async API making the same reads, in alternating rounds of one run.

    .venv/bin/python -m bench.client

A single ZooKeeper server holds 500 paths of 8 children; each round lists every path and
looks up one node under each (1,000 requests in flight together), as the fleet's indexer
does for a storm. The last line is machine-readable: ``summary client_cpu_ratio=…``
(sidecar / kazoo; below 1 is cheaper).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from kazoo.client import KazooClient

from bench.workload import client, create_all, ensure_paths
from sidecar.registry.zookeeper import ZooKeeperRegistry
from testbed.zookeeper import ZooKeeperServer

PATHS = 500
CHILDREN = 8
ROUNDS = 15


def main() -> None:
    with tempfile.TemporaryDirectory() as work, ZooKeeperServer(Path(work) / "zk", heap="1g") as zk:
        paths = [f"/bench/s{i}/providers" for i in range(PATHS)]
        plain = client(zk.connect_string)
        ensure_paths(plain, paths)
        create_all(plain, (f"{p}/n{j}" for p in paths for j in range(CHILDREN)))
        registry = ZooKeeperRegistry(zk.connect_string, 30, lambda _: None, lambda _: None)
        registry.connect(30)
        try:
            lookups = [f"{p}/n0" for p in paths]
            rounds: dict[str, list[float]] = {"kazoo": [], "sidecar": []}
            for _ in range(ROUNDS):
                rounds["kazoo"].append(cpu(lambda: kazoo_reads(plain, paths, lookups)))
                rounds["sidecar"].append(
                    cpu(lambda: (registry.list_names(paths), registry.stats(lookups)))
                )
        finally:
            registry.close()
            plain.stop()
            plain.close()
    kazoo, sidecar = (statistics.median(rounds[k]) * 1000 for k in ("kazoo", "sidecar"))
    requests = 2 * PATHS
    print(f"client: CPU ms per {requests} pipelined reads, median of {ROUNDS} rounds: "
          f"kazoo {kazoo:.0f}, sidecar {sidecar:.0f}")  # fmt: skip
    print(f"summary client_cpu_ratio={sidecar / kazoo:.2f}")


def kazoo_reads(zk: KazooClient, paths: list[str], lookups: list[str]) -> None:
    """The same requests through kazoo's async API, all in flight, then every answer."""
    pending = [zk.get_children_async(p, include_data=True) for p in paths]
    pending += [zk.exists_async(p) for p in lookups]
    for result in pending:
        result.get(timeout=30)


def cpu(action: Callable[[], object]) -> float:
    started = time.process_time()
    action()
    return time.process_time() - started


if __name__ == "__main__":
    main()
