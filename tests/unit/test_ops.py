"""The operations listener's answers: what a liveness probe and a readiness probe see."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from sidecar.ops.metrics import Metrics
from sidecar.ops.server import OpsServer


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
