"""How bench/run prints its figures: a table of ratios, then one machine-readable line."""

from __future__ import annotations

import sys
from dataclasses import dataclass


@dataclass
class Row:
    figure: str
    value: float
    baseline: float | None
    unit: str

    @property
    def ratio(self) -> float | None:
        return self.value / self.baseline if self.baseline else None


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def print_rows(rows: list[Row]) -> None:
    print(f"{'figure':42} {'value':>10} {'baseline':>10} {'ratio':>7}")
    for row in rows:
        baseline = f"{row.baseline:10.3f}" if row.baseline is not None else f"{'-':>10}"
        ratio = f"{row.ratio:7.2f}" if row.ratio is not None else f"{'-':>7}"
        print(f"{row.figure:42} {row.value:10.3f} {baseline} {ratio}  ({row.unit})")


def summary_line(figures: dict[str, float]) -> str:
    """The machine-readable last line of a run."""
    # idle_cpu_s keeps its three decimals; every ratio and size two or one.
    digits = {"idle_cpu_s": 3, "rss_mb": 1, "fleet_watches_per_host": 1, "nat_pickup_p99_s": 3}
    return "summary " + " ".join(f"{k}={v:.{digits.get(k, 2)}f}" for k, v in figures.items())


def print_one_sidecar(rows: list[Row], extra: dict[str, float]) -> None:
    print_rows(rows)
    print(f"{'peak RSS after cold start':42} {extra['rss_mb']:10.1f} {'-':>10} {'-':>7}  (MB)")
    print(f"{'CPU while idle':42} {extra['idle_cpu_s']:10.3f} {'-':>10} {'-':>7}  (s)")
    print(f"{'ZooKeeper watches held (wchs)':42} {extra['wchs']:10.0f} {'-':>10} {'-':>7}")
    print(f"{'with child watches (mntr zk_watch_count)':42} {extra['all_watches']:10.0f}")
