"""deploy/prometheus against a real sidecar: every metric the alerting rules and the dashboard
name is one a running sidecar exports (or is listed below as not exported yet)."""

from __future__ import annotations

from pathlib import Path

import pytest
from kazoo.client import KazooClient

from sidecar import urls
from sidecar.model import Endpoint
from sidecar.sources.host import interface_addresses
from testbed.dubbo_url import java_url_encode
from testbed.polling import wait_until
from testbed.promql import alert_expressions, dashboard_expressions, exported_names, metric_names
from testbed.sidecar_process import SidecarProcess
from testbed.zookeeper import ZooKeeperServer

from .conftest import INTERFACE
from .helpers import children, get

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
# Series Prometheus makes itself for every scrape target.
PROMETHEUS_SERIES = frozenset({"up"})
# Metrics of the fleet mode (issue 15) that rules and dashboard already use: remove each name
# here when the sidecar exports it (the test fails as soon as it does).
NOT_YET_EXPORTED: frozenset[str] = frozenset()


def test_rules_and_dashboard_name_only_metrics_the_sidecar_exports(
    tmp_path: Path, zookeeper: ZooKeeperServer, registry: KazooClient, root: str
) -> None:
    """A sidecar with a static mapping and no Docker rewrites one registration of this host;
    the metric names in its /metrics cover every name the alerts and the dashboard query,
    except Prometheus' own and the fleet metrics listed as not exported yet, none of which
    it exports."""
    providers = f"{root}/{INTERFACE}/providers"
    own = min(a for a in interface_addresses() if "." in a and not a.startswith("127."))
    registry.create(
        f"{providers}/{java_url_encode(f'dubbo://{own}:20990/{INTERFACE}?application=app')}",
        b"", ephemeral=True, makepath=True,
    )  # fmt: skip
    args = [
        *("--zookeeper", zookeeper.connect_string, "--root", root, "--docker-url", "none"),
        *("--advertise-host", "127.0.0.1", "--listen", "127.0.0.1:0"),
        *("--state-file", str(tmp_path / "state.json"), "--session-timeout", "10"),
    ]
    env = {"DUBBO_SIDECAR_STATIC_PORTS": "20990:30990"}
    with SidecarProcess(tmp_path / "sidecar.log", args, env=env) as sidecar:
        rewritten = [Endpoint("127.0.0.1", 30990)]
        wait_until(lambda: [urls.parse(n).endpoint for n in children(registry, providers)]
                   == rewritten, 10, message="the registration was not rewritten")  # fmt: skip
        sidecar.wait_for_event("resync_done")
        status, text = get(f"{sidecar.ops_url}/metrics")
    assert status == 200
    exported = exported_names(text)
    assert 'dubbo_sidecar_writes_total{action="rewrite",result="ok"} 1.0' in text

    used = {
        f"{name} (alert {alert})": name
        for alert, expr in alert_expressions(DEPLOY / "alerts.yml").items()
        for name in metric_names(expr)
    } | {
        f"{name} (dashboard)": name
        for query in dashboard_expressions(DEPLOY / "dashboard.json")
        for name in metric_names(query)
    }
    unknown = sorted(
        where
        for where, name in used.items()
        if name not in exported | PROMETHEUS_SERIES | NOT_YET_EXPORTED
    )
    assert unknown == [], f"not exported by the sidecar: {unknown}"
    assert sorted(NOT_YET_EXPORTED & exported) == [], "exported now: empty NOT_YET_EXPORTED"
    assert sorted(NOT_YET_EXPORTED - set(used.values())) == [], "listed but used nowhere"
