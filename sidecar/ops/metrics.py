"""What the sidecar counts, in Prometheus form (a registry of its own, not the global one)."""

from __future__ import annotations

import platform
import time
from importlib import metadata

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

import sidecar


class Metrics:
    """Every metric the sidecar exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        _what_runs(self.registry)
        self.writes = Counter(
            "dubbo_sidecar_writes",
            "Registry writes by decision (rewrite, update, restore, remove, drop-original) "
            "and result (ok, failed, denied)",
            ["action", "result"],
            registry=self.registry,
        )
        self.managed = Gauge(
            "dubbo_sidecar_registrations_managed",
            "Rewritten registrations this sidecar manages",
            registry=self.registry,
        )
        self.refused = Gauge(
            "dubbo_sidecar_registrations_refused",
            "Registrations of local container addresses left alone because their session is "
            "ambiguous or not provably this host's",
            registry=self.registry,
        )
        self.connected = Gauge(
            "dubbo_sidecar_connected",
            "1 while the sidecar is connected to the system (zookeeper, docker)",
            ["system"],
            registry=self.registry,
        )
        self.ready = Gauge(
            "dubbo_sidecar_ready",
            "1 while /readyz answers 200 (its reasons otherwise), computed at each scrape",
            registry=self.registry,
        )
        self.fleet = FleetMetrics(self.registry)
        self.proxy = ProxyMetrics(self.registry)
        self.coordination_open = Gauge(
            "dubbo_sidecar_coordination_open_nodes",
            "The sidecar's coordination parents (leases, records, the fleet's paths) whose ACL "
            "lets others than its credentials change them (the coordination_open event says "
            "which, and the command that closes them)",
            registry=self.registry,
        )
        self.lease = Gauge(
            "dubbo_sidecar_lease_held",
            "1 while this sidecar holds its lease (0: standing by)",
            registry=self.registry,
        )
        self._declare_passes()

    def _declare_passes(self) -> None:
        """How long passes take, how old the oldest work is, when the last one succeeded."""
        self.reconcile = Histogram(
            "dubbo_sidecar_reconcile_duration_seconds",
            "Duration of reconcile passes",
            ["kind"],
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.oldest_pending = Gauge(
            "dubbo_sidecar_oldest_pending_seconds",
            "Seconds the oldest work still to do has waited (0: none): marked and not yet "
            "taken, in the pass running now, or put off to be retried",
            registry=self.registry,
        )
        self._last_success = 0.0
        since = Gauge(
            "dubbo_sidecar_seconds_since_last_reconcile",
            "Seconds since the last successful reconcile pass (-1: none yet)",
            registry=self.registry,
        )
        since.set_function(self._since_last_success)

    def reconciled(self, seconds: float, full: bool) -> None:
        self.reconcile.labels("full" if full else "scoped").observe(seconds)
        self._last_success = time.monotonic()

    def _since_last_success(self) -> float:
        return time.monotonic() - self._last_success if self._last_success else -1.0


class FleetMetrics:
    """A fleet's shared work (--fleet), as the elected indexer sees it (0 elsewhere)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.indexer = Gauge(
            "dubbo_sidecar_fleet_indexer",
            "1 while this sidecar is the fleet's elected indexer",
            registry=registry,
        )
        self.members = Gauge(
            "dubbo_sidecar_fleet_members", "Live sidecars in the fleet", registry=registry
        )
        self.units = Gauge(
            "dubbo_sidecar_fleet_work_units",
            "Registry paths the fleet watches for every host",
            registry=registry,
        )
        self.owned = Gauge(
            "dubbo_sidecar_fleet_work_owned",
            "Of those, the paths this sidecar watches for the fleet: all of them on the "
            "indexer, none on the other members",
            registry=registry,
        )
        self.unowned = Gauge(
            "dubbo_sidecar_fleet_work_unowned",
            "Registrations whose session the indexer has still to look up (at most 5,000 a "
            "pass): until then each goes to every member that has its address, whose "
            "ownership proof decides",
            registry=registry,
        )
        self.ignored = Gauge(
            "dubbo_sidecar_fleet_ignored_nodes",
            "Nodes in the fleet's members, election and work paths that are not what a sidecar "
            "writes there (ignored; the fleet_node_ignored event names each)",
            registry=registry,
        )
        self.unwritable = Gauge(
            "dubbo_sidecar_fleet_work_unwritable",
            "Members whose work the indexer could not write (each retried with backoff; the "
            "fleet_work_unwritable event says why)",
            registry=registry,
        )
        self.unserved = Gauge(
            "dubbo_sidecar_fleet_unserved_registrations",
            "Registrations with a container's address whose session connects from a host "
            "where no sidecar of the fleet runs",
            ["host"],
            registry=registry,
        )


# How a proxied connection can end (sidecar.proxy.counters.why_closed).
CLOSED_BY = ("client", "server", "no-upstream", "malformed", "budget", "stopped")


class ProxyMetrics:
    """The proxy's relaying (proxy mode), as sidecar.proxy.counters.Counters."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._open = Gauge("dubbo_sidecar_proxy_connections", "The app's connections open "
                           "through the proxy", registry=registry)  # fmt: skip
        self._closed = Counter("dubbo_sidecar_proxy_connections_closed", "Connections ended, "
                               f"by who ended them ({', '.join(CLOSED_BY)})", ["why"],
                               registry=registry)  # fmt: skip
        self._held = Counter("dubbo_sidecar_proxy_requests_held", "Requests held until the "
                             "app's port bindings were known", registry=registry)  # fmt: skip
        self._refused = Counter(
            "dubbo_sidecar_proxy_requests_refused",
            "Writes not sent because they would store one of the app's container endpoints "
            "unpublished (the app's client is told the operation timed out, and retries)",
            registry=registry,
        )
        self._rewritten = Counter("dubbo_sidecar_proxy_rewrites", "Operations that named the "
                                  "app's endpoints, sent published", ["op"],
                                  registry=registry)  # fmt: skip
        self._bytes = Counter("dubbo_sidecar_proxy_bytes", "Bytes relayed, requests (app to "
                              "server) and replies", ["direction"], registry=registry)  # fmt: skip
        # Each known label's series at 0 from the start: one born at 1 would lose its first
        # count to rate() and increase().
        for why in CLOSED_BY:
            self._closed.labels(why)
        for direction in ("requests", "replies"):
            self._bytes.labels(direction)

    def opened(self) -> None:
        self._open.inc()

    def closed(self, why: str) -> None:
        self._open.dec()
        self._closed.labels(why).inc()

    def held(self) -> None:
        self._held.inc()

    def refused(self) -> None:
        self._refused.inc()

    def rewritten(self, op: str) -> None:
        self._rewritten.labels(op).inc()

    def relayed(self, direction: str, size: int) -> None:
        self._bytes.labels(direction).inc(size)


def _what_runs(registry: CollectorRegistry) -> None:
    """The process' memory, CPU and file descriptors (process_*), the interpreter
    (python_info) and the sidecar's build: on the sidecar's own registry, which is all
    /metrics serves."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    build = Gauge(
        "dubbo_sidecar_build_info",
        "1, labelled with the sidecar's version and those of Python and kazoo it runs on",
        ["version", "python", "kazoo"],
        registry=registry,
    )
    build.labels(sidecar.__version__, platform.python_version(), metadata.version("kazoo")).set(1)
