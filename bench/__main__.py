"""bench/run: every benchmark, as ratios against ZooKeeper's own speed measured in the same run."""

from __future__ import annotations

import argparse
import datetime
import logging
import signal
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from kazoo.client import KazooClient  # type: ignore[import-untyped,unused-ignore]

from bench import fleet, fleet_chaos, nat, proxy
from bench.instances import update_to_visible
from bench.table import Row, print_one_sidecar, print_rows, say, summary_line
from bench.workload import (
    FIRST_PORT,
    MAPPED_ADDRESS,
    STOPPING,
    Consumer,
    client,
    create_all,
    ensure_paths,
    name,
    percentile,
    process_cpu,
    process_status,
    rewritten,
    start_sidecar,
    wait_settled,
    write_mapping,
)
from bench.zkstats import mntr
from sidecar.registry.connection import PollingHandler
from testbed.sidecar_process import SidecarProcess
from testbed.tls import ServerTls
from testbed.zookeeper import ZooKeeperServer


def convergence(
    connect: str, work: Path, count: int, interfaces: int, tls: ServerTls | None = None
) -> list[Row]:
    """Create ``count`` registrations at once; per registration, create -> seen by a consumer
    (baseline: the original; with the sidecar: its rewrite). ``tls``: everyone (the load,
    the consumer, the sidecar) speaks TLS with a client certificate."""
    results = {}
    # kazoo's own handler waits on a TLS socket's descriptor while replies sit decrypted in
    # its TLS layer (until the next packet): the sidecar's handler is the clients' too.
    options = {**tls.kazoo_options(), "handler": PollingHandler()} if tls else {}
    for label, root in (("baseline", "/conv-base"), ("sidecar", "/conv-side")):
        load, watcher = client(connect, **options), client(connect, **options)
        paths = [f"{root}/svc{i}/providers" for i in range(interfaces)]
        ensure_paths(load, paths)
        sidecar = None
        if label == "sidecar":
            sidecar = start_sidecar(work, connect, root, count, *_tls_flags(tls))
            sidecar.wait_for_event("resync_done", timeout=60)
        consumer = Consumer(watcher, paths)
        nodes = [
            f"{paths[i % interfaces]}/{name(MAPPED_ADDRESS, FIRST_PORT + i, f'svc{i % interfaces}')}"  # noqa: E501
            for i in range(count)
        ]
        say(f"convergence ({label}): {count} registrations at once")
        sent = create_all(load, nodes)
        if label == "baseline":
            expected = {n.rsplit("/", 1)[1]: n for n in nodes}
        else:
            expected = {rewritten(n.rsplit("/", 1)[1]): n for n in nodes}
        seen = consumer.wait_for(set(expected), timeout=120)
        results[label] = [seen[shown] - sent[path] for shown, path in expected.items()]
        _close(sidecar, load, watcher)
    base, side = results["baseline"], results["sidecar"]
    return [
        Row("convergence p50", percentile(side, 50) * 1000, percentile(base, 50) * 1000, "ms"),
        Row("convergence p99", percentile(side, 99) * 1000, percentile(base, 99) * 1000, "ms"),
    ]


def _tls_flags(tls: ServerTls | None) -> list[str]:
    if tls is None:
        return []
    return ["--zookeeper-tls-ca", str(tls.ca), "--zookeeper-tls-cert", str(tls.client.cert),
            "--zookeeper-tls-key", str(tls.client.key)]  # fmt: skip


def tls_convergence(work: Path, count: int, interfaces: int) -> int:
    """``--tls``: convergence on a plaintext server and on a TLS-only one (client
    certificates required), side by side; the summary says TLS against plaintext."""
    pki = ServerTls.made_in(work / "pki")
    rows = []
    for label, tls in (("plaintext", None), ("TLS", pki)):
        with ZooKeeperServer(work / f"zk-{label}", heap="1g", tls=tls) as server:
            (work / label).mkdir()
            for row in convergence(server.connect_string, work / label, count, interfaces, tls):
                rows.append(Row(f"{row.figure} ({label})", row.value, row.baseline, row.unit))
    print_rows(rows)
    by_name = {r.figure: r for r in rows}
    figures = {
        f"convergence_{p}_tls_vs_plaintext": by_name[f"convergence {p} (TLS)"].value
        / by_name[f"convergence {p} (plaintext)"].value
        for p in ("p50", "p99")
    }
    print(summary_line(figures))
    return 0


def storm(connect: str, work: Path, count: int, interfaces: int) -> list[Row]:
    """``count`` registrations arriving together: until all are rewritten, against the time
    ZooKeeper takes to accept the same creates pipelined."""
    load = client(connect)
    base_paths = [f"/storm-base/svc{i}/providers" for i in range(interfaces)]
    ensure_paths(load, base_paths)
    nodes = [f"{base_paths[i % interfaces]}/{name(MAPPED_ADDRESS, FIRST_PORT + i, f'svc{i}')}"
             for i in range(count)]  # fmt: skip
    say(f"storm (baseline): {count} pipelined creates")
    started = time.perf_counter()
    create_all(load, nodes)
    baseline = time.perf_counter() - started

    paths = [f"/storm-side/svc{i}/providers" for i in range(interfaces)]
    ensure_paths(load, paths)
    sidecar = start_sidecar(work, connect, "/storm-side", count)
    sidecar.wait_for_event("resync_done", timeout=60)
    nodes = [f"{paths[i % interfaces]}/{name(MAPPED_ADDRESS, FIRST_PORT + i, f'svc{i}')}"
             for i in range(count)]  # fmt: skip
    say(f"storm (sidecar): {count} registrations, until all are rewritten")
    started = time.perf_counter()
    create_all(load, nodes)
    # Done when the sidecar has committed every rewrite (its own counter, polled: a watching
    # consumer would load ZooKeeper more than the baseline does).
    metrics = sidecar.ops_url + "/metrics"
    while _rewrites_done(metrics) < count:
        time.sleep(0.02)
    with_sidecar = time.perf_counter() - started
    expected = {rewritten(n.rsplit("/", 1)[1]) for n in nodes}
    present = {child for path in paths for child in load.get_children(path)}
    assert expected <= present, f"{len(expected - present)} rewrites missing"
    _close(sidecar, load)
    return [Row("storm: all rewritten", with_sidecar, baseline, "s")]


def cold_start(
    work: Path, interfaces: int, per_interface: int, mapped: int, idle_seconds: float
) -> tuple[list[Row], dict[str, float]]:
    """A large registry already there: start to first full reconcile, against a pipelined
    scan of the same tree; then the sidecar's memory and its CPU while idle."""
    with ZooKeeperServer(work / "zk-cold", heap="1g") as server:
        load = client(server.connect_string)
        root = "/cold"
        paths = [f"{root}/svc{i}/providers" for i in range(interfaces)]
        say(f"cold start: populating {interfaces} interfaces, {interfaces * per_interface} nodes")
        ensure_paths(load, paths)
        total = interfaces * per_interface
        every = total // mapped
        nodes = []
        for j in range(total):
            interface = j % interfaces
            if j % every == 0 and j // every < mapped:
                host, port = MAPPED_ADDRESS, FIRST_PORT + j // every
            else:
                host, port = f"10.200.{j // 250 % 250}.{j % 250}", 20880
            nodes.append(f"{paths[interface]}/{name(host, port, f'svc{interface}')}")
        create_all(load, nodes)
        write_mapping(work, root, mapped)  # configuration, written before the clock starts

        say("cold start: pipelined scan (baseline)")
        pipelined = _scan(server.connect_string, root, pipelined=True)
        say("cold start: sequential scan (for contrast)")
        naive = _scan(server.connect_string, root, pipelined=False)
        say("cold start: the sidecar")
        started = datetime.datetime.now(datetime.UTC)
        sidecar = start_sidecar(work, server.connect_string, root, mapped)
        done = sidecar.wait_for_event("resync_done", timeout=600)
        finished = datetime.datetime.fromisoformat(done["timestamp"])
        cold = (finished - started).total_seconds()
        rss_mb = process_status(sidecar.pid, "VmHWM") / 1024
        wait_settled(sidecar.pid)  # its first writes' watches fire: that is not idle yet
        say(f"cold start: {idle_seconds:.0f} s idle")
        cpu_before = process_cpu(sidecar.pid)
        events_before = len(sidecar.events())
        time.sleep(idle_seconds)  # measuring idle CPU: nothing to synchronise with
        idle_cpu = process_cpu(sidecar.pid) - cpu_before
        # What ran meanwhile: a reconnect (a loaded machine) costs a full resync.
        during = sidecar.events()[events_before:]
        say("while idle: " + (", ".join(
            f"{e['event']}{' ' + e['kind'] if 'kind' in e else ''}" for e in during
            if e["event"].startswith(("zookeeper", "resync_done"))
        ) or "nothing"))  # fmt: skip
        watches = _watch_counts(server)
        _close(sidecar, load)
    rows = [
        Row("cold start: first full reconcile", cold, pipelined, "s"),
        Row("cold start: sequential scan (contrast)", naive, pipelined, "s"),
    ]
    extra = {"rss_mb": rss_mb, "idle_cpu_s": idle_cpu, **watches}
    return rows, extra


def _rewrites_done(metrics_url: str) -> float:
    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith('dubbo_sidecar_writes_total{action="rewrite",result="ok"}'):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def _scan(connect: str, root: str, pipelined: bool) -> float:
    zk = client(connect)
    started = time.perf_counter()
    interfaces = zk.get_children(root)
    paths = [f"{root}/{i}/providers" for i in interfaces]
    if pipelined:
        listings = [(p, zk.get_children_async(p)) for p in paths]
        children = [f"{p}/{c}" for p, r in listings for c in r.get(timeout=60)]
        for request in [zk.get_async(c) for c in children]:
            request.get(timeout=60)
    else:
        for path in paths:
            for child in zk.get_children(path):
                zk.get(f"{path}/{child}")
    elapsed = time.perf_counter() - started
    zk.stop()
    zk.close()
    return elapsed


def _watch_counts(server: ZooKeeperServer) -> dict[str, float]:
    # wchs counts only data and existence watches; mntr's zk_watch_count adds child watches.
    counts = {"wchs": float("nan"), "all_watches": float("nan")}
    for line in server.four_letter("wchs").splitlines():
        if line.startswith("Total watches:"):
            counts["wchs"] = float(line.rsplit(":", 1)[1])
    counts["all_watches"] = mntr(server)["zk_watch_count"]
    return counts


def _close(sidecar: SidecarProcess | None, *clients: KazooClient) -> None:
    if sidecar is not None:
        sidecar.kill()
    for zk in clients:
        zk.stop()
        zk.close()


def instance_updates(work: Path, updates: int) -> int:
    """bench/run --instances: update-to-visible of application-level instances, replace and
    mirror mode, against the update seen without a sidecar."""
    delays = {}
    with ZooKeeperServer(work / "zk", heap="1g") as server:
        for mode in ("baseline", "replace", "mirror"):
            say(f"instances ({mode}): {updates} provider updates, each until a consumer sees it")
            delays[mode] = update_to_visible(server.connect_string, work, mode, updates)
    base = delays["baseline"]
    rows = [
        Row(f"instance update {mode} {label}", percentile(delays[mode], p) * 1000,
            percentile(base, p) * 1000, "ms")
        for mode in ("replace", "mirror") for label, p in (("p50", 50), ("p99", 99))
    ]  # fmt: skip
    print_rows(rows)
    figures = [
        f"{mode}_p{p}_ms={percentile(delays[mode], p) * 1000:.1f}"
        for mode in ("baseline", "replace", "mirror")
        for p in (50, 99)
    ]
    print(f"summary instance_updates={updates} " + " ".join(figures))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, to try the harness")
    parser.add_argument(
        "--instances", action="store_true",
        help="only the update-to-visible of application-level instances (replace, mirror)",
    )  # fmt: skip
    parser.add_argument(
        "--fleet", action="store_true",
        help="only the fleet: N = 1, 10, 50 sidecars as hosts, without and with --fleet; ~1 h",
    )  # fmt: skip
    parser.add_argument(
        "--fleet-chaos", action="store_true",
        help="only the fleet chaos run: sidecars killed and restarted during a storm",
    )  # fmt: skip
    parser.add_argument(
        "--tls", action="store_true",
        help="only convergence over TLS (client certificates) beside plaintext",
    )  # fmt: skip
    parser.add_argument(
        "--one-sidecar", action="store_true",
        help="only one sidecar's convergence, storm and cold start (with its peak RSS)",
    )  # fmt: skip
    parser.add_argument(
        "--nat", action="store_true",
        help="only the NAT table source: pickup of a published hostPort, idle CPU (1,000 ports)",
    )  # fmt: skip
    return parser


def _only(args: argparse.Namespace, work: Path) -> int:
    """Run the one benchmark the flags name."""
    if args.tls:
        return tls_convergence(work, 100 if args.quick else 1000, 10 if args.quick else 100)
    if args.instances:
        return instance_updates(work, 20 if args.quick else 100)
    if args.fleet_chaos:
        return fleet_chaos.run(work)
    if args.nat:
        nat_only = nat.run(work, args.quick)
        print_rows([Row(*row) for row in nat.rows(nat_only)])
        print(summary_line(nat.summary(nat_only)))
        return 0
    runs = [(mode, count) for mode in fleet.MODES for count in FLEET_SIZES]
    sweep = fleet.sweep(work, 2000, 500, runs)
    # Without --fleet, N = 50 sidecars each reading 100,000 nodes is too slow to start on a
    # small machine: on the full registry, one of them against the fleet.
    runs = [("watch", 1), *(("fleet", count) for count in FLEET_SIZES)]
    sweep += fleet.sweep(work, 20_000, 500, runs)
    print("\n".join(fleet.table(sweep, 500)))
    print(summary_line(fleet.summary(sweep)))
    return 0


def main() -> int:
    args = _parser().parse_args()
    # The bench's own clients reconnect on purpose (a server restart): no warnings for that.
    logging.getLogger("kazoo").setLevel(logging.ERROR)
    # SIGTERM unwinds like Ctrl-C: every process, namespace and server started is removed.
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with tempfile.TemporaryDirectory(prefix="sidecar-bench-") as tmp:
        work = Path(tmp)
        if args.tls or args.instances or args.fleet_chaos or args.nat or args.fleet:
            return _only(args, work)
        scale = 10 if args.quick else 1
        rows, extra = one_sidecar(work, scale)
        if args.one_sidecar:
            print_one_sidecar(rows, extra)
            print(summary_line(_one_sidecar_figures(rows, extra)))
            return 0
        proxy_figures = proxy.run(work, args.quick)
        rows += [Row(*row) for row in proxy.rows(proxy_figures)]
        nat_figures = nat.run(work, args.quick)
        rows += [Row(*row) for row in nat.rows(nat_figures)]
        fleet_rows = fleet.sweep(work, 300 // scale, 100 // scale, [("fleet", 1), ("fleet", 5)])
    print_one_sidecar(rows, extra)
    print("\n".join(fleet.table(fleet_rows, 100 // scale)))
    figures = {
        **_one_sidecar_figures(rows, extra),
        **proxy.summary(proxy_figures),
        **nat.summary(nat_figures),
        **fleet.summary(fleet_rows),
    }
    print(summary_line(figures))
    return 0


def _one_sidecar_figures(rows: list[Row], extra: dict[str, float]) -> dict[str, float]:
    """The summary's figures of one sidecar: ratios against ZooKeeper's own, peak RSS, idle."""
    by_name = {r.figure: r for r in rows}
    return {
        "convergence_p99_ratio": by_name["convergence p99"].ratio or 0.0,
        "storm_ratio": by_name["storm: all rewritten"].ratio or 0.0,
        "coldstart_ratio": by_name["cold start: first full reconcile"].ratio or 0.0,
        "rss_mb": extra["rss_mb"],
        "idle_cpu_s": extra["idle_cpu_s"],
    }


def _stop(signum: int, _: object) -> None:
    STOPPING.set()
    raise SystemExit(128 + signum)


# The fleet sizes of --fleet.
FLEET_SIZES = (1, 10, 50)


def one_sidecar(work: Path, scale: int) -> tuple[list[Row], dict[str, float]]:
    """Convergence, storm and cold start of one sidecar."""
    rows: list[Row] = []
    with ZooKeeperServer(work / "zk", heap="1g") as server:
        rows += convergence(server.connect_string, work, 1000 // scale, 100 // scale)
        rows += storm(server.connect_string, work, 10_000 // scale, 100 // scale)
    cold_rows, extra = cold_start(
        work, 20_000 // scale, 5, 1000 // scale, 60.0 / (6 if scale > 1 else 1)
    )
    return rows + cold_rows, extra


if __name__ == "__main__":
    sys.exit(main())
