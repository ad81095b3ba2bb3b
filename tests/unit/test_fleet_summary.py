"""The fleet benchmark's summary figures, from its table rows (bench/fleet.py)."""

from __future__ import annotations

from dataclasses import replace

from bench.fleet import Row, summary

_ONE = Row(
    mode="fleet", hosts=1, nodes=10_000, watches=2004, idle_rate=0.4, requests_foreign=4.0,
    requests_own=6.0,
    zk_cpu_ms=2.0, p50=100.0, p99=200.0, p50_ratio=1.5, p99_ratio=2.0, restart_requests=2000,
    restart_seconds=5.0, cpu_start=5.0, cpu_storms=1.5, cpu_restart=1.5, rss_mb=65.0,
    held_nodes=3.0, held_kb=0.5, drops=0,
    full_start=1.0, full_restart=1.0, expired=0,
)  # fmt: skip


def test_summary_compares_the_largest_fleet_with_one_sidecar_on_the_last_registry() -> None:
    """Watches per host are what each host beyond the first adds; the requests ratio is the
    largest fleet's requests per change (both storms) over one sidecar's; the p99 ratio is
    the largest fleet's; only the rows of the mode and registry measured last count."""
    rows = [
        replace(_ONE, mode="watch", hosts=50, watches=1e6, requests_foreign=1e4, p99_ratio=9.0),
        replace(_ONE, nodes=1_000, watches=204, requests_foreign=9.0, p99_ratio=99.0),
        _ONE,
        replace(_ONE, hosts=10, watches=20_040, requests_foreign=22.0, requests_own=58.0),
        replace(_ONE, hosts=50, watches=100_200, requests_foreign=102.0, requests_own=298.0,
                p99_ratio=30.0),
    ]  # fmt: skip

    assert summary(rows) == {
        "fleet_watches_per_host": 2004.0,
        "fleet_requests_ratio": 40.0,
        "fleet_p99_ratio": 30.0,
    }
