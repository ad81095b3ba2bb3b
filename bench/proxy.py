"""Proxy mode's figures, each against direct connections to the same ZooKeeper in the same run.

``python -m bench.proxy [--quick]`` runs them alone; ``bench/run`` runs them with the rest.
Requests name the app's own node, so every one of them is rewritten on its way: the worst case
for the proxy. A raw jute client keeps the client's own cost out of the figures.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from kazoo.client import KazooClient  # type: ignore[import-untyped,unused-ignore]

from bench.table import summary_line
from bench.workload import (
    FIRST_PORT,
    HOST_PORT_OFFSET,
    MAPPED_ADDRESS,
    Consumer,
    client,
    create_all,
    ensure_paths,
    name,
    percentile,
    process_status,
    rewritten,
)
from sidecar.proxy import jute
from testbed.polling import free_port
from testbed.proxy_process import ProxyProcess
from testbed.zookeeper import ZooKeeperServer

WINDOW = 500  # requests in flight in the throughput run
ROUNDS = 5


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class RawSession:
    """A ZooKeeper session over a plain socket: just enough of the protocol to measure."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = jute.FrameReader()
        self.ready: list[bytes] = []
        self.xid = 0
        connect = struct.pack(">iqiq", 0, 0, 30_000, 0) + jute.encode_buffer(bytes(16)) + b"\0"
        self.sock.sendall(jute.frame(connect))
        self.receive(1)

    def exists(self, path: str) -> bytes:
        self.xid += 1
        body = struct.pack(">ii", self.xid, jute.EXISTS) + jute.encode_string(path) + b"\0"
        return jute.frame(body)

    def receive(self, count: int) -> list[bytes]:
        while len(self.ready) < count:
            data = self.sock.recv(262144)
            if not data:
                raise ConnectionError("connection closed")
            self.ready += self.reader.feed(data)
        got, self.ready = self.ready[:count], self.ready[count:]
        return got

    def close(self) -> None:
        self.sock.close()


def latencies(port: int, path: str, count: int) -> list[float]:
    session = RawSession(port)
    found = []
    for _ in range(count):
        request = session.exists(path)
        started = time.perf_counter()
        session.sock.sendall(request)
        [reply] = session.receive(1)
        found.append(time.perf_counter() - started)
        assert jute.reply_error(reply) == 0, "the node is missing"
    session.close()
    return found


def throughput(port: int, path: str, count: int) -> float:
    """Requests per second with WINDOW of them in flight."""
    session = RawSession(port)
    started = time.perf_counter()
    session.sock.sendall(b"".join(session.exists(path) for _ in range(min(WINDOW, count))))
    sent, done = min(WINDOW, count), 0
    while done < count:
        replies = session.receive(max(1, len(session.ready)) if session.ready else 1)
        done += len(replies)
        more = min(len(replies), count - sent)
        if more:
            session.sock.sendall(b"".join(session.exists(path) for _ in range(more)))
            sent += more
    elapsed = time.perf_counter() - started
    session.close()
    return count / elapsed


def start_proxy(work: Path, connect: str, ports: int) -> ProxyProcess:
    """The proxy as a process of its own, mapping ``ports`` ports of MAPPED_ADDRESS."""
    listen = free_port("127.0.0.1")
    proxy = ProxyProcess(
        work / f"proxy-{listen}.log",
        [
            *("--listen", f"127.0.0.1:{listen}", "--zookeeper", connect),
            *("--address", MAPPED_ADDRESS, "--log-level", "info"),
            *(f"--static-ports={p}:{p + HOST_PORT_OFFSET}"
              for p in range(FIRST_PORT, FIRST_PORT + ports)),
        ],
    ).start()  # fmt: skip
    proxy.wait_for_event("proxy_listening")
    return proxy


def requests(server: ZooKeeperServer, proxy_port: int, count: int) -> dict[str, float]:
    """Latency and pipelined throughput of exists requests for the app's own node, direct and
    through the proxy in alternating rounds (after one round of warm-up each), so that both
    sides meet the same noise."""
    zk = client(server.connect_string)
    mine = f"/proxy-bench/svc/providers/{name(MAPPED_ADDRESS, FIRST_PORT, 'svc')}"
    ensure_paths(zk, [mine.rsplit("/", 1)[0]])
    published = f"{mine.rsplit('/', 1)[0]}/{rewritten(mine.rsplit('/', 1)[1])}"
    zk.create(published, b"")
    sides = {"direct": (server.port, published), "proxy": (proxy_port, mine)}
    waits: dict[str, list[float]] = {side: [] for side in sides}
    rates: dict[str, list[float]] = {side: [] for side in sides}
    say(f"proxy: {count} sequential and {count * 10} pipelined requests, direct and proxied")
    for round_number in range(ROUNDS + 1):
        for side, (port, path) in sides.items():
            found = latencies(port, path, count // ROUNDS)
            rate = throughput(port, path, count * 10 // ROUNDS)
            if round_number:  # the first round warms both up
                waits[side] += found
                rates[side].append(rate)
    _close(zk)
    figures = {}
    for side in sides:
        figures[f"{side}_p50"] = percentile(waits[side], 50) * 1000
        figures[f"{side}_p99"] = percentile(waits[side], 99) * 1000
        figures[f"{side}_rate"] = statistics.median(rates[side])
    return figures


def connections(proxy: ProxyProcess, count: int) -> float:
    """Peak RSS of the proxy (MB) holding ``count`` sessions open, each answering after all
    are open."""
    say(f"proxy: {count} connections held")
    port = int(proxy.wait_for_event("proxy_listening")["address"].rsplit(":", 1)[1])
    sessions = [RawSession(port) for _ in range(count)]
    for session in sessions:
        session.sock.sendall(session.exists("/"))
    for session in sessions:
        session.receive(1)
    rss = process_status(proxy.pid, "VmHWM") / 1024
    for session in sessions:
        session.close()
    return rss


def create_to_visible(server: ZooKeeperServer, proxy_port: int, count: int) -> dict[str, float]:
    """Per registration, create -> seen by a watching consumer: direct (the original name)
    and through the proxy (the published name)."""
    found = {}
    for label, port in (("direct", server.port), ("proxy", proxy_port)):
        root = f"/proxy-visible-{label}"
        interfaces = max(1, count // 10)
        paths = [f"{root}/svc{i}/providers" for i in range(interfaces)]
        loader, watcher = client(f"127.0.0.1:{port}"), client(server.connect_string)
        ensure_paths(watcher, paths)
        consumer = Consumer(watcher, paths)
        nodes = [f"{paths[i % interfaces]}/{name(MAPPED_ADDRESS, FIRST_PORT + i, f'svc{i}')}"
                 for i in range(count)]  # fmt: skip
        say(f"proxy: create -> visible, {count} registrations ({label})")
        sent = create_all(loader, nodes)
        shown = {
            (n.rsplit("/", 1)[1] if label == "direct" else rewritten(n.rsplit("/", 1)[1])): n
            for n in nodes
        }
        seen = consumer.wait_for(set(shown), timeout=120)
        delays = [seen[s] - sent[n] for s, n in shown.items()]
        found[f"{label}_p50"] = percentile(delays, 50) * 1000
        found[f"{label}_p99"] = percentile(delays, 99) * 1000
        _close(loader, watcher)
    return found


def run(work: Path, quick: bool) -> dict[str, float]:
    """Every proxy figure; keys as in the summary."""
    scale = 10 if quick else 1
    with ZooKeeperServer(work / "zk-proxy", heap="1g", max_client_connections=0) as server:
        proxy = start_proxy(work, server.connect_string, 1000 // scale)
        try:
            proxy_port = int(proxy.wait_for_event("proxy_listening")["address"].rsplit(":")[-1])
            figures = {f"requests_{k}": v for k, v in
                       requests(server, proxy_port, 5000 // scale).items()}  # fmt: skip
            figures["rss_mb_1000_connections"] = connections(proxy, 1000)
            figures |= {f"visible_{k}": v for k, v in
                        create_to_visible(server, proxy_port, 1000 // scale).items()}  # fmt: skip
        finally:
            proxy.kill()
    return figures


def rows(figures: dict[str, float]) -> Iterator[tuple[str, float, float | None, str]]:
    """(figure, value, baseline, unit) for the table."""
    yield "proxy: request p50", figures["requests_proxy_p50"], figures["requests_direct_p50"], "ms"
    yield "proxy: request p99", figures["requests_proxy_p99"], figures["requests_direct_p99"], "ms"
    yield ("proxy: pipelined throughput", figures["requests_proxy_rate"],
           figures["requests_direct_rate"], "req/s")  # fmt: skip
    yield "proxy: RSS with 1,000 connections", figures["rss_mb_1000_connections"], None, "MB"
    yield ("proxy: create -> visible p50", figures["visible_proxy_p50"],
           figures["visible_direct_p50"], "ms")  # fmt: skip
    yield ("proxy: create -> visible p99", figures["visible_proxy_p99"],
           figures["visible_direct_p99"], "ms")  # fmt: skip


def summary(figures: dict[str, float]) -> dict[str, float]:
    """The proxy's fields of the summary line."""
    return {
        "proxy_p99_ratio": figures["requests_proxy_p99"] / figures["requests_direct_p99"],
        "proxy_throughput_ratio": figures["requests_proxy_rate"] / figures["requests_direct_rate"],
    }


def _close(*clients: KazooClient) -> None:
    for zk in clients:
        zk.stop()
        zk.close()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a tenth of the sizes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sidecar-bench-proxy-") as tmp:
        figures = run(Path(tmp), args.quick)
    for figure, value, baseline, unit in rows(figures):
        ratio = f"{value / baseline:7.2f}" if baseline else f"{'-':>7}"
        shown = f"{baseline:10.3f}" if baseline is not None else f"{'-':>10}"
        print(f"{figure:42} {value:10.3f} {shown} {ratio}  ({unit})")
    print(summary_line(summary(figures)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
