"""The operations listener's answers: what a liveness probe and a readiness probe see."""

from __future__ import annotations

import json
import platform
import urllib.error
import urllib.request
from collections.abc import Iterator
from importlib import metadata

import pytest
from prometheus_client.parser import text_string_to_metric_families

import sidecar
from sidecar.ops.metrics import CLOSED_BY, Metrics
from sidecar.ops.server import OpsServer
from sidecar.proxy.counters import why_closed


@pytest.fixture
def problems() -> Iterator[tuple[list[str], list[str], str]]:
    """A listener on loopback whose readiness and health reasons the test sets."""
    not_ready: list[str] = []
    not_healthy: list[str] = []
    server = OpsServer("127.0.0.1", 0, Metrics(), lambda: list(not_ready),
                       lambda: list(not_healthy))  # fmt: skip
    server.start()
    try:
        yield not_ready, not_healthy, f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_healthz_fails_with_the_reasons_once_something_died(
    problems: tuple[list[str], list[str], str],
) -> None:
    """/healthz answers 200 while the process can recover by itself, 503 with the reasons
    (the orchestrator's cue to restart it) once it cannot; /readyz is separate."""
    not_ready, not_healthy, url = problems
    not_ready.append("not connected to ZooKeeper")
    assert _get(f"{url}/healthz")[0] == 200
    not_healthy.append("the reconcile loop has ended")
    status, body = _get(f"{url}/healthz")
    assert (status, json.loads(body)["reasons"]) == (503, ["the reconcile loop has ended"])
    assert json.loads(_get(f"{url}/readyz")[1])["reasons"] == ["not connected to ZooKeeper"]


def test_metrics_say_the_build_and_the_process_resources(
    problems: tuple[list[str], list[str], str],
) -> None:
    """/metrics names the sidecar's version and those of Python and kazoo
    (dubbo_sidecar_build_info, 1), and the process' memory, CPU and file descriptors."""
    status, text = _get(f"{problems[2]}/metrics")
    assert status == 200
    samples = {s.name: s for f in text_string_to_metric_families(text) for s in f.samples}
    build = samples["dubbo_sidecar_build_info"]
    assert build.value == 1
    assert build.labels == {"version": sidecar.__version__, "python": platform.python_version(),
                            "kazoo": metadata.version("kazoo")}  # fmt: skip
    assert samples["process_resident_memory_bytes"].value > 0
    assert samples["process_cpu_seconds_total"].value > 0
    assert samples["process_open_fds"].value > 0
    assert samples["python_info"].labels["version"] == platform.python_version()


def test_proxy_series_are_there_from_the_start_for_every_way_a_connection_ends(
    problems: tuple[list[str], list[str], str],
) -> None:
    """Before any connection ended, /metrics has a 0 series of
    dubbo_sidecar_proxy_connections_closed_total for each way the proxy can report one
    ending, and of dubbo_sidecar_proxy_bytes_total for both directions."""
    reasons = ["client closed", "server closed", "no upstream", "request: buffers over 64 MB",
               "proxy stopped", "request too short"]  # fmt: skip
    assert {why_closed(reason) for reason in reasons} == set(CLOSED_BY)
    text = _get(f"{problems[2]}/metrics")[1]
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    closed = {s.labels["why"]: s.value for s in samples
              if s.name == "dubbo_sidecar_proxy_connections_closed_total"}  # fmt: skip
    relayed = {s.labels["direction"]: s.value for s in samples
               if s.name == "dubbo_sidecar_proxy_bytes_total"}  # fmt: skip
    assert closed == dict.fromkeys(CLOSED_BY, 0)
    assert relayed == {"requests": 0, "replies": 0}
