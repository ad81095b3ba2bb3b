"""Registrations in bulk, a watching consumer, and the sidecar under a static mapping."""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from kazoo.client import KazooClient  # type: ignore[import-untyped,unused-ignore]
from kazoo.recipe.watchers import ChildrenWatch  # type: ignore[import-untyped,unused-ignore]

from sidecar import urls
from sidecar.model import Endpoint
from testbed.dubbo_url import java_url_encode
from testbed.polling import wait_until
from testbed.sidecar_process import SidecarProcess

# Registrations the sidecar can map: this address, ports from FIRST_PORT on, published (in
# the static mapping) on HOST_PORT_OFFSET higher. No container needed: the figures are the
# sidecar's and ZooKeeper's.
MAPPED_ADDRESS = "10.98.0.1"
FIRST_PORT = 20000
HOST_PORT_OFFSET = 20000
PIPELINE = 500
# Set by bench/run's SIGINT and SIGTERM handler, whose exception kazoo can swallow (it wraps
# a socket send in a bare ``except``): long waits check it too, so that a stop is not lost.
STOPPING = threading.Event()


def check_stopping() -> None:
    """Raise SystemExit if bench/run was asked to stop."""
    if STOPPING.is_set():
        raise SystemExit("stopped by a signal")


def percentile(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_settled(pid: int, window: float = 3.0, allowance: float = 0.05) -> None:
    """Until a process has used at most ``allowance`` CPU seconds over ``window`` seconds
    (a sidecar finishing its start: planning again the paths whose watches its own first
    writes fired)."""
    samples: list[tuple[float, float]] = []

    def settled() -> bool:
        now, cpu = time.monotonic(), process_cpu(pid)
        samples.append((now, cpu))
        old = [u for t, u in samples if now - t >= window]
        return bool(old) and cpu - old[-1] <= allowance

    wait_until(settled, 300, interval=0.5, message="the sidecar never settled")


def process_status(pid: int, field: str) -> float:
    """A field of /proc/PID/status, in its unit (kB for memory)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    raise KeyError(field)


def name(host: str, port: int, interface: str) -> str:
    url = (
        f"dubbo://{host}:{port}/{interface}?anyhost=true&application=bench&dubbo=2.0.2"
        f"&interface={interface}&methods=a,b,c&side=provider&timestamp=1795889781982"
    )
    return java_url_encode(url)


def rewritten(node_name: str) -> str:
    endpoint = urls.parse(node_name).endpoint
    return urls.parse(node_name).with_endpoint(
        Endpoint("127.0.0.1", endpoint.port + HOST_PORT_OFFSET)
    )


def client(connect: str, **options: object) -> KazooClient:
    """A started client (``options``: kazoo's, e.g. TLS)."""
    zk = KazooClient(hosts=connect, timeout=30.0, **options)
    zk.start(timeout=30)
    return zk


def create_all(zk: KazooClient, paths: Iterable[str], ephemeral: bool = True) -> dict[str, float]:
    """Create the nodes pipelined; return when each create was sent (perf_counter)."""
    sent: dict[str, float] = {}
    pending = []
    for path in paths:
        sent[path] = time.perf_counter()
        pending.append(zk.create_async(path, b"", ephemeral=ephemeral))
        if len(pending) >= PIPELINE:
            for request in pending[: PIPELINE // 2]:
                request.get(timeout=60)
            del pending[: PIPELINE // 2]
    for request in pending:
        request.get(timeout=60)
    return sent


def ensure_paths(zk: KazooClient, paths: Sequence[str]) -> None:
    """Persistent parents, pipelined (creates of existing nodes are ignored)."""
    prefixes = {
        "/".join(p.split("/")[:depth]) for p in paths for depth in range(2, p.count("/") + 2)
    }
    for depth in sorted({p.count("/") for p in prefixes}):
        pending = [zk.create_async(p, b"") for p in sorted(prefixes) if p.count("/") == depth]
        for request in pending:
            try:
                request.get(timeout=60)
            except Exception as exc:
                if type(exc).__name__ != "NodeExistsError":
                    raise


class Consumer:
    """A consumer's view: when each node name was first seen under the watched paths."""

    def __init__(self, zk: KazooClient, paths: Iterable[str]) -> None:
        self.first_seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        for path in paths:
            ChildrenWatch(zk, path, self._seen)

    def _seen(self, children: list[str]) -> None:
        now = time.perf_counter()
        with self._changed:
            for child in children:
                self.first_seen.setdefault(child, now)
            self._changed.notify_all()

    def wait_for(self, names: set[str], timeout: float) -> dict[str, float]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not names <= self.first_seen.keys():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    missing = len(names - self.first_seen.keys())
                    raise TimeoutError(f"{missing} of {len(names)} names never seen")
                self._changed.wait(min(remaining, 1.0))
                check_stopping()
            return {n: self.first_seen[n] for n in names}


def write_mapping(work: Path, root: str, ports: int) -> Path:
    """The static mapping of ``ports`` ports for the sidecar on ``root``."""
    return mapping_file(work / f"ports-{root.strip('/')}.toml", MAPPED_ADDRESS, ports)


def mapping_file(mapping: Path, address: str, ports: int) -> Path:
    """A static mapping of ``address``'s ports FIRST_PORT... to +HOST_PORT_OFFSET, left as
    it is when it already says that (a sidecar re-reads a file changed in the last second
    before use)."""
    lines = [f'addresses = ["{address}"]', "[ports]"]
    lines += [f"{p} = {p + HOST_PORT_OFFSET}" for p in range(FIRST_PORT, FIRST_PORT + ports)]
    text = "\n".join(lines) + "\n"
    if not mapping.exists() or mapping.read_text() != text:
        mapping.write_text(text)
    return mapping


def start_sidecar(work: Path, connect: str, root: str, ports: int, *extra: str) -> SidecarProcess:
    """The sidecar on ``root`` with a static mapping of ``ports`` ports and no Docker
    (``extra``: more arguments)."""
    mapping = write_mapping(work, root, ports)
    return SidecarProcess(
        work / f"sidecar-{root.strip('/')}.log",
        [
            *("--zookeeper", connect, "--root", root, "--services-root", f"{root}-services"),
            *("--docker-url", "none", "--static-file", str(mapping), "--probe-seconds", "0"),
            *("--advertise-host", "127.0.0.1", "--listen", "127.0.0.1:0"),
            *("--state-file", str(work / f"state-{root.strip('/')}.json")),
            *("--session-timeout", "30", "--log-level", os.environ.get("BENCH_LOG_LEVEL", "info")),
            *extra,
        ],
    ).start()
