"""bench/run --instances: how long a provider's update of its application-level instance takes
to reach a watching consumer at the published address, in replace mode (rewritten in place)
and mirror mode, against the same update seen without any sidecar.

The provider writes its instance as Curator's ``updateService`` does (a setData of its own
node with its container address and a new metadata revision); the consumer is a kazoo data
watch on the node it reads (replace: the provider's node; mirror: its mirror). Each update
waits until the previous one was seen. No Docker: a static mapping publishes the address.
"""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path

from kazoo.client import KazooClient  # type: ignore[import-untyped,unused-ignore]

from bench.workload import FIRST_PORT, HOST_PORT_OFFSET, MAPPED_ADDRESS, client, start_sidecar
from testbed.curator import dubbo_metadata
from testbed.history import NodeHistory, Seen

APPLICATION = "bench-app"
PUBLISHED = ("127.0.0.1", FIRST_PORT + HOST_PORT_OFFSET)


def instance(revision: str) -> bytes:
    """The instance as a Dubbo 3 provider writes it through Curator, at its container address."""
    instance_id = f"{MAPPED_ADDRESS}:{FIRST_PORT}"
    return json.dumps(
        {
            "name": APPLICATION, "id": instance_id, "address": MAPPED_ADDRESS,
            "port": FIRST_PORT, "sslPort": None,
            "payload": {
                "@class": "org.apache.dubbo.registry.zookeeper.ZookeeperInstance",
                "id": instance_id, "name": APPLICATION,
                "metadata": dubbo_metadata(FIRST_PORT, revision),
            },
            "registrationTimeUTC": 1795889781982, "serviceType": "DYNAMIC", "uriSpec": None,
        },
        separators=(",", ":"),
    ).encode()  # fmt: skip


def update_to_visible(connect: str, work: Path, mode: str, updates: int) -> list[float]:
    """Seconds from each provider update to the consumer seeing its revision where it looks:
    ``mode`` ``replace``, ``mirror`` or ``baseline`` (no sidecar: the update itself)."""
    root = f"/instances-{mode}"
    services = f"{root}-services"
    node = f"{services}/{APPLICATION}/{MAPPED_ADDRESS}:{FIRST_PORT}"
    provider, consumer = client(connect), client(connect)
    provider.create(node, instance("rev-0"), ephemeral=True, makepath=True)
    watched, where = node, (MAPPED_ADDRESS, FIRST_PORT)
    sidecar = None
    if mode != "baseline":
        mirror = ["--mode", "mirror", "--mirror-root", f"{root}-external",
                  "--mirror-services-root", f"{root}-mirror"]  # fmt: skip
        extra = mirror if mode == "mirror" else []
        sidecar = start_sidecar(work, connect, root, 1, *extra)
        sidecar.wait_for_event("resync_done", timeout=60)
        where = PUBLISHED
        if mode == "mirror":
            watched = f"{root}-mirror/{APPLICATION}/{PUBLISHED[0]}:{PUBLISHED[1]}"
    history = NodeHistory(consumer, watched)
    history.wait_for(lambda seen: _shows(seen, where, "rev-0"), timeout=30)
    delays = []
    try:
        for i in range(1, updates + 1):
            start = len(history.entries)
            sent = time.perf_counter()
            provider.set(node, instance(f"rev-{i}"))
            seen = history.wait_for(partial(_shows, where=where, revision=f"rev-{i}"), 30, start)
            delays.append(seen.at - sent)
    finally:
        if sidecar is not None:
            sidecar.kill()
        _close(provider, consumer)
    return delays


def _shows(seen: Seen, where: tuple[str, int], revision: str) -> bool:
    if seen.data is None:
        return False
    doc = json.loads(seen.data)
    metadata = doc["payload"]["metadata"]
    return (doc["address"], doc["port"]) == where and (
        metadata["dubbo.metadata.revision"] == revision
    )


def _close(*clients: KazooClient) -> None:
    for zk in clients:
        zk.stop()
        zk.close()
