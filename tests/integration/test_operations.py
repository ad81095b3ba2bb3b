"""The operations surface on real servers: health, readiness, metrics and `status`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
from docker.models.containers import Container
from kazoo.client import KazooClient

from sidecar.config import Settings, fields_of, load_settings
from sidecar.loop.wiring import fleet_once, plan_once, status_once
from sidecar.report.events import Events
from sidecar.sources import address as advertise
from testbed.engine import DockerEngine
from testbed.networks import container_ip, published_port
from testbed.polling import wait_until
from testbed.sidecar_process import SidecarProcess
from testbed.zookeeper import ZooKeeperServer

from .conftest import INTERFACE
from .helpers import children, get, metric, one_shot, rewritten_name

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def test_health_readiness_and_metrics(
    zookeeper: ZooKeeperServer,
    providers: str,
    registry: KazooClient,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """/healthz answers as soon as the process runs; /readyz says what is missing until the
    first reconcile is done; /metrics counts the rewrite, the managed registration and the
    connections; the readiness (/readyz and dubbo_sidecar_ready) turns false when ZooKeeper
    goes away."""
    provider = start_provider()
    sidecar = start_sidecar()
    base = sidecar.ops_url
    assert get(f"{base}/healthz") == (200, "ok\n")
    wait_until(lambda: children(registry, providers) == [rewritten_name(provider)], 5,
               message="not rewritten")  # fmt: skip
    status, body = get(f"{base}/readyz")
    assert (status, json.loads(body)) == (200, {"ready": True, "reasons": []})

    _, text = get(f"{base}/metrics")
    assert 'dubbo_sidecar_writes_total{action="rewrite",result="ok"} 1.0' in text
    assert metric(text, "dubbo_sidecar_registrations_managed") == 1
    assert metric(text, 'dubbo_sidecar_connected{system="zookeeper"}') == 1
    assert metric(text, 'dubbo_sidecar_connected{system="docker"}') == 1
    assert metric(text, "dubbo_sidecar_lease_held") == 1
    assert metric(text, "dubbo_sidecar_ready") == 1
    assert metric(text, "dubbo_sidecar_reconcile_duration_seconds_count") >= 1
    assert 0 <= metric(text, "dubbo_sidecar_seconds_since_last_reconcile") < 60

    zookeeper.pause()
    try:

        def unready() -> bool:
            status, body = get(f"{base}/readyz")
            reasons = json.loads(body)["reasons"]
            ready = metric(get(f"{base}/metrics")[1], "dubbo_sidecar_ready")
            return status == 503 and "not connected to ZooKeeper" in reasons and ready == 0

        wait_until(unready, 20, message="/readyz stayed ready without ZooKeeper")
    finally:
        zookeeper.resume()
    wait_until(lambda: get(f"{base}/readyz")[0] == 200, 20, message="not ready again")


def test_status_lists_what_this_hosts_sidecar_manages(
    zookeeper: ZooKeeperServer,
    engine: DockerEngine,
    root: str,
    providers: str,
    registry: KazooClient,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """`status` reads the live registry and lists the managed registration, its container
    endpoint and container, what decided it, and the running sidecar that owns it."""
    provider = start_provider()
    sidecar = start_sidecar()
    wait_until(lambda: children(registry, providers) == [rewritten_name(provider)], 5,
               message="not rewritten")  # fmt: skip
    done = one_shot("status", zookeeper.connect_string, root, engine.url)
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split()[:4] == ["INTERFACE", "ADVERTISED", "CONTAINER", "ENDPOINT"]
    [row] = rows
    assert row.split()[:4] == [
        INTERFACE,
        f"127.0.0.1:{published_port(provider, '20880/tcp')}",
        f"{container_ip(provider)}:20880",
        provider.short_id,
    ]
    assert row.endswith(
        f"per-host, address from --advertise-host  the per-host sidecar (session "
        f"0x{sidecar.session:x})"
    )


def test_plan_and_status_as_json(
    zookeeper: ZooKeeperServer,
    engine: DockerEngine,
    root: str,
    providers: str,
    registry: KazooClient,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
    tmp_path: Path,
) -> None:
    """`plan --output json` and `status --output json` print one JSON document each, with a
    version, a kind and one object per row with named, structured fields; credentials read
    from a file appear nowhere in the output or the logs."""
    provider = start_provider()
    endpoint = {"host": container_ip(provider), "port": 20880}
    advertised = {"host": "127.0.0.1", "port": published_port(provider, "20880/tcp")}
    secret = tmp_path / "zookeeper-auth"
    secret.write_text("shop:s3cret-pw\n")
    planned = one_shot("plan", zookeeper.connect_string, root, engine.url, "--output", "json",
                       "--zookeeper-auth-file", str(secret), "--log-level", "debug")  # fmt: skip
    assert planned.returncode == 0, planned.stderr
    assert "s3cret" not in planned.stdout + planned.stderr
    plan = json.loads(planned.stdout)
    assert (plan["version"], plan["kind"], plan["unreadable"]) == (1, "plan", [])
    [decision] = [d for d in plan["decisions"] if d["path"].startswith(f"{providers}/")]
    assert decision == {
        "action": "rewrite",
        "interface": INTERFACE,
        "path": decision["path"],
        "registered": endpoint,
        "advertised": advertised,
        "container": {"id": provider.id, "name": provider.name},
        "decided_by": "per-host, address from --advertise-host",
        "reason": decision["reason"],
    }

    sidecar = start_sidecar()
    wait_until(lambda: children(registry, providers) == [rewritten_name(provider)], 5,
               message="not rewritten")  # fmt: skip
    done = one_shot("status", zookeeper.connect_string, root, engine.url, "--output", "json")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert (status["version"], status["kind"]) == (1, "status")
    [row] = status["registrations"]
    assert row["path"] == f"{providers}/{rewritten_name(provider)}"
    assert (row["interface"], row["advertised"]) == (INTERFACE, advertised)
    assert (row["container_endpoint"], row["container"]) == (endpoint, provider.id)
    assert row["session"] == f"0x{sidecar.session:x}"
    assert f"0x{sidecar.session:x}" in row["managed_by"]


class _Recording:
    """Settings that note each setting read (the one-shot commands read them as they run)."""

    def __init__(self, settings: Settings, read: set[str]) -> None:
        self._settings, self._read = settings, read

    def __getattr__(self, name: str) -> Any:
        if name in Settings.model_fields:
            self._read.add(name)
        return getattr(self._settings, name)


@pytest.mark.parametrize(
    ("command", "fleet"), [("plan", False), ("status", False), ("status", True)]
)
def test_one_shot_commands_read_only_the_settings_they_accept(
    command: str,
    fleet: bool,
    zookeeper: ZooKeeperServer,
    engine: DockerEngine,
    root: str,
    start_provider: Callable[..., Container],
) -> None:
    """`plan` and `status` (also `--fleet`) read no setting they do not offer: one they
    ignore in the environment or the file could not silently take its default."""
    start_provider()
    flags = {"zookeeper": zookeeper.connect_string, "root": (root,), "docker_url": engine.url,
             "advertise_host": "127.0.0.1", "fleet": fleet}  # fmt: skip
    read: set[str] = set()
    settings = cast(Settings, _Recording(load_settings(flags, command=command), read))
    host = advertise.resolve(settings, {})
    if command == "plan":
        decisions, _ = plan_once(settings, host, Events(decisions=False), {})
        assert decisions
    elif fleet:
        fleet_once(settings)
    else:
        status_once(settings, host, Events(decisions=False), {})
    assert "zookeeper" in read
    assert read <= fields_of(command), read - fields_of(command)
