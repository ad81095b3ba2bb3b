"""deploy/prometheus checked with Debian's promtool: the rules are valid and each alert is
unit-tested both firing and quiet; the example configuration loads them; the dashboard's
queries are valid PromQL and its panels are laid out sanely."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.promql import alert_expressions, dashboard_expressions, metric_names

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool not found: scripts/bootstrap installs Debian's prometheus package")
    return found


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=DEPLOY, capture_output=True, text=True, timeout=60, check=False)


def test_rules_and_example_configuration_pass_promtool_checks(promtool: str) -> None:
    """`promtool check rules` accepts alerts.yml and `promtool check config` the example
    configuration that loads it."""
    rules = run(promtool, "check", "rules", "alerts.yml")
    assert rules.returncode == 0, rules.stdout + rules.stderr
    config = run(promtool, "check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


def test_alert_unit_tests_pass(promtool: str) -> None:
    """`promtool test rules alerts.test.yml`: every case fires (or stays quiet) as written,
    labels and rendered annotations included."""
    done = run(promtool, "test", "rules", "alerts.test.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    """Each alert of alerts.yml has a promtool case where it fires and one where it must not,
    and the tests name no alert that does not exist."""
    tests = yaml.safe_load((DEPLOY / "alerts.test.yml").read_text())
    assert tests["rule_files"] == ["alerts.yml"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in (c for group in tests["tests"] for c in group["alert_rule_test"]):
        (firing if case["exp_alerts"] else quiet).add(case["alertname"])
    alerts = set(alert_expressions(DEPLOY / "alerts.yml"))
    assert len(alerts) == 10
    assert firing == alerts
    assert quiet == alerts


def test_dashboard_queries_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    """Every query of the dashboard (Grafana's variables replaced) parses: promtool checks
    them as recording rules; each selects at least one metric."""
    queries = dashboard_expressions(DEPLOY / "dashboard.json")
    assert all(metric_names(query) for query in queries)
    rules = [{"record": f"dashboard:query_{i}", "expr": q} for i, q in enumerate(queries)]
    (tmp_path / "queries.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "d", "rules": rules}]})
    )
    done = subprocess.run(
        [promtool, "check", "rules", str(tmp_path / "queries.yml")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_dashboard_panels_are_distinct_and_do_not_overlap() -> None:
    """Panel ids are unique, every query panel reads the dashboard's data source variable with
    distinct query ids, and no two panels cover the same cells of the 24-column grid."""
    dashboard = json.loads((DEPLOY / "dashboard.json").read_text())
    panels: list[dict[str, Any]] = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            ref_ids = [t["refId"] for t in panel["targets"]]
            assert len(set(ref_ids)) == len(ref_ids) > 0, panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "job", "instance"}


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('histogram_quantile(0.99, sum by (le) (rate(a_bucket{x="}{"}[5m])))', {"a_bucket"}),
        ('count(up{job=~"$job"} == 0) or vector(0)', {"up"}),
        ("a / on (x) group_left (y) b offset 5m > bool 1e3", {"a", "b"}),
        ("sum(rate(c_total[1m:10s])) by (instance) unless d", {"c_total", "d"}),
    ],
)
def test_metric_names_of_promql(expr: str, names: set[str]) -> None:
    """The name extraction the export check relies on: metrics only, not functions, labels,
    grouping, durations, numbers, strings or keywords."""
    assert metric_names(expr) == names
