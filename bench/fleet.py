"""bench/run --fleet: what N sidecars, one per stand-in host, cost one ZooKeeper ensemble.

Per N, against three servers holding a large registry: the watches they hold, the requests
they receive per registration change (``mntr`` deltas, idle traffic subtracted), the
convergence of a storm of changes spread over the hosts as a ratio against the same run's
create -> visible baseline, what restarting one server costs, and CPU and RSS per sidecar.
Figures of the whole fleet are ratios against N = 1 in the same run.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from kazoo.client import KazooClient  # type: ignore[import-untyped,unused-ignore]
from kazoo.exceptions import NoNodeError  # type: ignore[import-untyped,unused-ignore]

from bench.fleet_lab import (
    CONTAINER_ADDRESS,
    FOREIGN_ADDRESS,
    PORTS,
    Fleet,
    node_name,
    rewritten_for,
)
from bench.workload import (
    FIRST_PORT,
    Consumer,
    check_stopping,
    client,
    create_all,
    ensure_paths,
    percentile,
)
from bench.zkstats import connected_sessions, cpu_seconds, packets, restarted, total
from sidecar.records import RECORDS_ROOT
from testbed.ensemble import ZooKeeperEnsemble
from testbed.hosts import Hosts
from testbed.polling import wait_until

ROOT = "/fleet"
PER_INTERFACE = 5  # registrations per interface in the registry, on other hosts' addresses
# Sidecars run with the default settings except the periodic resync, which is pushed out of
# the way (at N = 50 its bursts would land in some measurements and not in others), and
# closing the session on SIGTERM, so that a round's rewrites are gone before the next one.
SIDECAR_ARGS = ("--resync-seconds", "3600", "--session-timeout", "30", "--close-session-on-exit")
# How the sidecars share the registry: "watch", each watching every path itself (without
# --fleet, as every sidecar did before the fleet index), or "fleet" (--fleet).
MODES = ("watch", "fleet")
QUIET_WINDOW = 3.0
SIDECAR_TREE = RECORDS_ROOT.rsplit("/", 1)[0]
T = TypeVar("T")


@dataclass
class Row:
    """One fleet size's figures (requests per change: ``mntr`` deltas minus idle traffic)."""

    mode: str
    hosts: int
    nodes: int
    watches: float
    idle_rate: float
    requests_foreign: float
    requests_own: float
    zk_cpu_ms: float
    p50: float
    p99: float
    p50_ratio: float
    p99_ratio: float
    restart_requests: float
    restart_seconds: float
    cpu_start: float
    cpu_storms: float
    cpu_restart: float
    rss_mb: float
    held_nodes: float
    held_kb: float
    drops: int
    full_start: float
    full_restart: float
    expired: int


def say(text: str) -> None:
    check_stopping()
    print(text, file=sys.stderr, flush=True)


def wait_quiet(
    ensemble: ZooKeeperEnsemble, fleet: Fleet, idle_rate: float, timeout: float = 900.0
) -> float:
    """Until, for QUIET_WINDOW seconds, ZooKeeper has received no more than idle traffic and
    the sidecars have used next to no CPU (a sidecar may still be planning what it has
    read); returns the packets received so far."""
    samples: list[tuple[float, float, float]] = []
    allowance = 2 * idle_rate * QUIET_WINDOW + 10
    cpu_allowance = (0.02 * len(fleet.sidecars) + 0.05) * QUIET_WINDOW

    def quiet() -> float | None:
        check_stopping()
        now, count, cpu = time.monotonic(), packets(ensemble), sum(fleet.cpu_seconds())
        samples.append((now, count, cpu))
        old = [(c, u) for t, c, u in samples if now - t >= QUIET_WINDOW]
        if old and count - old[-1][0] <= allowance and cpu - old[-1][1] <= cpu_allowance:
            return count
        return None

    return wait_until(quiet, timeout, interval=0.5, message="the fleet never went quiet")


def idle_rate(ensemble: ZooKeeperEnsemble, fleet: Fleet, seconds: float = 10.0) -> float:
    """Requests per second ZooKeeper receives while nothing changes (pings)."""
    # Until then, allow a ping every 5 s per connection (kazoo pings every 10 s at 30 s).
    wait_quiet(ensemble, fleet, idle_rate=total(ensemble, "zk_num_alive_connections") / 5)
    started, before = time.monotonic(), packets(ensemble)
    time.sleep(seconds)  # measuring a rate: nothing to synchronise with
    return (packets(ensemble) - before) / (time.monotonic() - started)


@contextmanager
def registry(work: Path, hosts: Hosts, interfaces: int) -> Iterator[ZooKeeperEnsemble]:
    """Three servers listening on the bridge, holding ``interfaces`` x PER_INTERFACE
    registrations of other hosts' addresses (ephemeral, in the loader's session, which lives
    as long as the ensemble)."""
    ensemble = ZooKeeperEnsemble(work / f"zk-{interfaces}", bind=hosts.gateway)
    for server in ensemble.servers:
        server.heap = "1g"
    with ensemble:
        loader = client(ensemble.connect_string)
        say(f"fleet: populating {interfaces} interfaces, {interfaces * PER_INTERFACE} nodes")
        paths = [f"{ROOT}/svc{i}/providers" for i in range(interfaces)]
        ensure_paths(loader, [*paths, f"{ROOT}-services"])
        create_all(loader, (
            f"{paths[j % interfaces]}/{background_name(j, interfaces)}"
            for j in range(interfaces * PER_INTERFACE)
        ))  # fmt: skip
        try:
            yield ensemble
        finally:
            loader.stop()
            loader.close()


def background_name(j: int, interfaces: int) -> str:
    """Registration j of the registry: an address of a host outside the fleet."""
    return node_name(f"10.200.{j // 250 % 250}.{j % 250}", 20880, f"svc{j % interfaces}", "other")


def measure(
    work: Path, hosts: Hosts, zk: ZooKeeperEnsemble, mode: str, count: int, interfaces: int,
    changes: int,
) -> Row:  # fmt: skip
    """One fleet of ``count`` hosts: a baseline storm before the sidecars start, then their
    first resync, idle traffic, two storms, a server restart."""
    paths = [f"{ROOT}/svc{i}/providers" for i in range(min(changes, interfaces))]
    place = work / f"{mode}-n{count}-{interfaces}"
    args = (*SIDECAR_ARGS, *(("--fleet",) if mode == "fleet" else ()))
    with Fleet(hosts, zk.connect_string, count, ROOT, place, args) as fleet:
        watcher = client(zk.connect_string)
        try:
            consumer = Consumer(watcher, paths)
            say(f"fleet N={count}: baseline storm of {changes} registrations, no sidecar")
            base = storm(fleet, consumer, paths, changes, "base")
            consumer_watches = total(zk, "zk_watch_count")
            say(f"fleet N={count}: starting {count} sidecars on {interfaces * PER_INTERFACE} nodes")
            fleet.start_sidecars()
            fleet.wait_ready(timeout=1800)
            cpu_start = sum(fleet.cpu_seconds()) / count
            rate = idle_rate(zk, fleet)
            watches = total(zk, "zk_watch_count") - consumer_watches
            say(f"fleet N={count}: storm of {changes} registrations of other hosts' addresses")
            cpu_before = sum(fleet.cpu_seconds())
            _, foreign, zk_foreign = counted(
                zk, fleet, rate, changes,
                lambda: storm(fleet, consumer, paths, changes, "foreign"),
            )  # fmt: skip
            say(f"fleet N={count}: storm of {changes} registrations of the hosts' containers")
            side, own, zk_own = counted(
                zk, fleet, rate, changes, lambda: storm(fleet, consumer, paths, changes, "own"),
            )  # fmt: skip
            cpu_storms = (sum(fleet.cpu_seconds()) - cpu_before) / count
            held_nodes, held_bytes = held(watcher)
        finally:
            watcher.stop()
            watcher.close()
        drops, full_start, expired = fleet.drops(), fleet.full_resyncs() / count, fleet.expiries()
        say(f"fleet N={count}: ZooKeeper server restart")
        cpu_before = sum(fleet.cpu_seconds())
        restart_requests, restart_seconds = restart(zk, fleet, rate)
        cpu_restart = (sum(fleet.cpu_seconds()) - cpu_before) / count
        full_restart = fleet.full_resyncs() / count - full_start
        expired = fleet.expiries() - expired
        rss = sum(fleet.rss_mb()) / count
    p50, p99 = percentile(side, 50), percentile(side, 99)
    return Row(
        mode, count, interfaces * PER_INTERFACE, watches, rate, foreign, own,
        (zk_foreign + zk_own) / 2,
        p50 * 1000, p99 * 1000, p50 / percentile(base, 50), p99 / percentile(base, 99),
        restart_requests, restart_seconds, cpu_start, cpu_storms, cpu_restart, rss,
        held_nodes / count, held_bytes / count / 1024, drops,
        full_start, full_restart, expired,
    )  # fmt: skip


def held(zk: KazooClient) -> tuple[int, int]:
    """Nodes and bytes (names and data) the sidecars keep in ZooKeeper apart from the
    registry and the records of their rewrites (one per rewrite, not per host): leases and,
    with --fleet, members, ballots and work."""
    nodes = size = 0
    pending = [SIDECAR_TREE]
    while pending:
        path = pending.pop()
        if path == RECORDS_ROOT:
            continue
        try:
            data, _ = zk.get(path)
            children = zk.get_children(path)
        except NoNodeError:
            continue
        nodes, size = nodes + 1, size + len(path) + len(data)
        pending += [f"{path}/{child}" for child in children]
    return nodes, size


def storm(
    fleet: Fleet, consumer: Consumer, paths: list[str], changes: int, kind: str
) -> list[float]:
    """``changes`` registrations created at once, change j on path j (wrapping) by host
    j mod N. Kind ``own``: of the hosts' container address, each rewritten by its host's
    sidecar; ``base`` and ``foreign``: of an address no host maps. Per registration, create
    -> seen by the consumer (its rewrite, for own)."""
    count = len(fleet.hosts)
    names: dict[int, list[str]] = {i: [] for i in range(min(count, changes))}
    expected: dict[str, str] = {}  # what the consumer waits for -> the path created
    for j in range(changes):
        index = j % count
        address = CONTAINER_ADDRESS if kind == "own" else FOREIGN_ADDRESS
        application = f"n{count}-{fleet.hosts[index].name}-{kind}-{j}"
        name = node_name(address, FIRST_PORT + j % PORTS, f"svc{j % len(paths)}", application)
        path = f"{paths[j % len(paths)]}/{name}"
        names[index].append(path)
        expected[rewritten_for(fleet.hosts[index], name) if kind == "own" else name] = path
    sent = fleet.create(names)
    seen = consumer.wait_for(set(expected), timeout=1800)
    return [seen[shown] - sent[path] for shown, path in expected.items()]


def counted(
    zk: ZooKeeperEnsemble, fleet: Fleet, rate: float, changes: int, action: Callable[[], T]
) -> tuple[T, float, float]:
    """What ``action`` returns, and the ZooKeeper requests and CPU ms per change it caused
    until the fleet was quiet again (idle traffic subtracted)."""
    before, zk_before, started = packets(zk), cpu_seconds(zk), time.monotonic()
    result = action()
    after = wait_quiet(zk, fleet, rate)
    elapsed = time.monotonic() - started
    zk_cpu = (cpu_seconds(zk) - zk_before) * 1000 / changes
    return result, (after - before - rate * elapsed) / changes, zk_cpu


def restart(zk: ZooKeeperEnsemble, fleet: Fleet, rate: float) -> tuple[float, float]:
    """Restart a follower (its clients, about a third, move to the others; sessions
    survive); the requests the ensemble received from then on until quiet (idle traffic
    subtracted), and how long that took from when the server served again."""
    follower = zk.followers()[0]
    follower.stop()
    before = packets(zk)  # the others'; the restarted server counts from 0 again
    follower.start()
    restarted(follower)
    started = time.monotonic()

    def reconnected() -> bool:
        # A session that expired meanwhile counts once its sidecar has logged its new one.
        check_stopping()
        return fleet.sessions() <= connected_sessions(zk)

    wait_until(reconnected, 900, interval=0.5, message="sidecars did not reconnect")
    after = wait_quiet(zk, fleet, rate)
    elapsed = time.monotonic() - started
    return after - before - rate * elapsed, elapsed - QUIET_WINDOW


def sweep(work: Path, interfaces: int, changes: int, runs: Sequence[tuple[str, int]]) -> list[Row]:
    """On one registry of ``interfaces``, one fleet per (mode, sidecars) of ``runs``."""
    with Hosts() as hosts, registry(work, hosts, interfaces) as zk:
        return [measure(work, hosts, zk, mode, count, interfaces, changes) for mode, count in runs]


HEADER = (
    f"{'mode':>5} {'N':>3} {'nodes':>7} {'watches':>8} {'idle/s':>7} {'req/chg':>8} {'req/own':>8}"
    f" {'zkms/chg':>8} {'p50 ms':>7} {'p50 x':>6} {'p99 ms':>7} {'p99 x':>6}"
    f" {'restart':>8} {'rst s':>6} {'cpu st':>7} {'cpu sto':>7} {'cpu rst':>7}"
    f" {'rss MB':>6} {'nodes/h':>7} {'KB/h':>6} {'drops':>5} {'full':>5} {'rfull':>5} {'rexp':>4}"
)
LEGEND = """\
mode: watch, each sidecar watches every path itself (no --fleet, as before the fleet index),
or fleet (--fleet); N: sidecars (hosts); nodes: registry size; watches: the fleet's (mntr
zk_watch_count, idle, minus the consumer's); idle/s: requests/s ZooKeeper receives idle
(pings), subtracted below (the bench's own mntr and cons are never counted); req/chg,
req/own: requests ZooKeeper receives per change, storm of registrations of other hosts'
addresses / of the hosts' own containers (each rewritten by its host's sidecar); both
include the change itself and the consumer's re-listing; zkms/chg: ZooKeeper CPU ms per
change (both storms); p50/p99: create -> rewrite seen by a consumer, x: ratio against create
-> seen in a storm before the sidecars started; restart: requests a follower's restart
causes until quiet, rst s: from serving again till quiet; cpu st/sto/rst: CPU s per sidecar
for the first full resync, the two storms, the restart; rss MB: per sidecar at the end;
nodes/h, KB/h: nodes and bytes ZooKeeper holds per host for the sidecars (leases; members,
ballots, work), besides the registry and one record per rewrite; drops: connection losses
the sidecars logged before the restart; full, rfull: full resyncs per sidecar before the
restart (1 expected), after it; rexp: sidecar sessions that expired over the restart (their
rewrites went with them)"""


def table(rows: Sequence[Row], changes: int) -> list[str]:
    """The table bench/run prints (stable: the AFTER run is compared with it line by line)."""
    lines = [f"fleet: {changes} changes per storm, sidecars with {' '.join(SIDECAR_ARGS)}",
             HEADER]  # fmt: skip
    for r in rows:
        lines.append(
            f"{r.mode:>5} {r.hosts:3d} {r.nodes:7d} {r.watches:8.0f} {r.idle_rate:7.1f}"
            f" {r.requests_foreign:8.1f} {r.requests_own:8.1f} {r.zk_cpu_ms:8.2f}"
            f" {r.p50:7.1f} {r.p50_ratio:6.2f} {r.p99:7.1f} {r.p99_ratio:6.2f}"
            f" {r.restart_requests:8.0f} {r.restart_seconds:6.1f} {r.cpu_start:7.2f}"
            f" {r.cpu_storms:7.2f} {r.cpu_restart:7.2f} {r.rss_mb:6.1f}"
            f" {r.held_nodes:7.1f} {r.held_kb:6.2f} {r.drops:5d}"
            f" {r.full_start:5.2f} {r.full_restart:5.2f} {r.expired:4d}"
        )
    return [*lines, LEGEND]


def summary(rows: Sequence[Row]) -> dict[str, float]:
    """The fleet's figures for the summary line: the largest fleet against N = 1, in the
    mode and on the registry measured last. fleet_watches_per_host: watches each host beyond
    the first adds."""
    sizes = [r for r in rows if r.nodes == rows[-1].nodes and r.mode == rows[-1].mode]
    one = next(r for r in sizes if r.hosts == 1)
    most = max(sizes, key=lambda r: r.hosts)
    extra_hosts = max(1, most.hosts - one.hosts)
    per_change = [(r.requests_foreign + r.requests_own) / 2 for r in (one, most)]
    return {
        "fleet_watches_per_host": (most.watches - one.watches) / extra_hosts,
        "fleet_requests_ratio": per_change[1] / per_change[0],
        "fleet_p99_ratio": most.p99_ratio,
    }
