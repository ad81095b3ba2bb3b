"""Proxy mode seen from outside, on a real sidecar process: its metrics count connections,
rewrites, refusals and bytes, and /readyz says not ready while the proxy cannot reach a
ZooKeeper server for the app, and ready again once it can."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import OperationTimeoutError

from testbed.polling import free_port, wait_until
from testbed.sidecar_process import SidecarProcess
from testbed.zookeeper import ZooKeeperServer

from .helpers import get, metric
from .proxy_helpers import ADDRESS, PORTS, node_name

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_proxy_metrics_and_readiness(tmp_path: Path, root: str) -> None:
    """An app registers through the sidecar's proxy (one rewrite), tries to register an
    unpublished port (one refusal); then its server goes away: /readyz names the proxy's
    unreachable upstream until the server is back."""
    mapping = tmp_path / "ports.toml"
    mapping.write_text(f'addresses = ["{ADDRESS}"]\n[ports]\n20880 = {PORTS[20880]}\n')
    proxy_port, ops_port = free_port(), free_port()
    with ZooKeeperServer(tmp_path / "zk") as server:
        sidecar = SidecarProcess(tmp_path / "sidecar.log", [
            "--zookeeper", server.connect_string, "--root", root, "--docker-url", "none",
            "--static-file", str(mapping), "--advertise-host", "127.0.0.1",
            "--proxy-listen", f"127.0.0.1:{proxy_port}", "--listen", f"127.0.0.1:{ops_port}",
            "--state-file", "", "--session-timeout", "4",
        ]).start()  # fmt: skip
        app = KazooClient(hosts=f"127.0.0.1:{proxy_port}", timeout=4.0)
        try:
            sidecar.wait_for_event("lease_held")
            ops = f"http://127.0.0.1:{ops_port}"
            wait_until(lambda: get(f"{ops}/readyz")[0] == 200, 20, message="never ready")
            app.start(timeout=15)
            providers = f"{root}/com.example.DemoService/providers"
            app.ensure_path(providers)
            app.create(f"{providers}/{node_name()}", b"", ephemeral=True)
            with pytest.raises(OperationTimeoutError):
                app.create(f"{providers}/{node_name(port=20999)}", b"", ephemeral=True)
            text = get(f"{ops}/metrics")[1]
            assert metric(text, "dubbo_sidecar_proxy_connections ") == 1
            assert metric(text, 'dubbo_sidecar_proxy_rewrites_total{op="create"}') == 1
            assert metric(text, "dubbo_sidecar_proxy_requests_refused_total") == 1
            assert metric(text, 'dubbo_sidecar_proxy_bytes_total{direction="requests"}') > 0

            server.stop()
            wait_until(lambda: any(r.startswith("proxy: no ZooKeeper server reachable")
                                   for r in _not_ready(ops)), 30, message="ready")  # fmt: skip
            server.start()
            wait_until(lambda: get(f"{ops}/readyz")[0] == 200, 30, message="not ready again")
        finally:
            app.stop()
            app.close()
            sidecar.kill()


def _not_ready(ops: str) -> list[str]:
    """The reasons /readyz gives."""
    reasons: list[str] = json.loads(get(f"{ops}/readyz")[1])["reasons"]
    return reasons
