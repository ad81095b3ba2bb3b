"""The demo (`scripts/demo`, the README's "Developing"): the job end to end, quickly, cleaned up."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from testbed.engine import DockerEngine

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def test_demo_shows_the_consumer_failing_then_reaching_the_provider_and_cleans_up(
    engine: DockerEngine,
) -> None:
    """The demo walks its six steps: the consumer fails on the container address, succeeds
    through the rewritten one, the registration goes when the container stops; it finishes
    well under 3 minutes, exits 0 and leaves no container behind."""

    def demo_containers() -> set[str]:
        found = engine.client.containers.list(all=True, filters={"name": "demo-provider"})
        return {c.short_id for c in found}

    before = demo_containers()
    done = subprocess.run(
        [sys.executable, "-m", "testbed.demo"], capture_output=True, text=True, timeout=200,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert [int(n) for n in re.findall(r"^\[(\d)/6\]", out, re.M)] == [1, 2, 3, 4, 5, 6]
    before_sidecar, after_sidecar = out.split("[4/6]")
    assert re.search(r"^ +FAIL 172\.\d+\.\d+\.\d+:20880", before_sidecar, re.M)
    assert re.search(r"^ +OK +127\.0\.0\.1:\d+ answered 'pong demo-provider", after_sidecar, re.M)
    assert "registration was removed" in after_sidecar
    [seconds] = re.findall(r"^Done in (\d+) s\.$", out, re.M)
    assert int(seconds) < 180
    assert demo_containers() == before
