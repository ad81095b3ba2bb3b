"""Docker access: a remote engine over TLS from DOCKER_HOST, and nothing but reads."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from docker.models.containers import Container
from kazoo.client import KazooClient

from testbed.docker_proxy import ReadOnlyDockerProxy, make_tls_files
from testbed.engine import DockerEngine
from testbed.polling import wait_until
from testbed.sidecar_process import SidecarProcess

from .helpers import children, rewritten_name

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def test_remote_engine_over_tls_is_found_through_docker_host(
    tmp_path: Path,
    engine: DockerEngine,
    providers: str,
    registry: KazooClient,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """With no --docker-url, DOCKER_HOST=tcp://…, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH
    reach an engine that demands client certificates, as the docker CLI would."""
    tls = make_tls_files(tmp_path / "tls")
    with ReadOnlyDockerProxy(Path(engine.url.removeprefix("unix://")), tls) as remote:
        provider = start_provider()
        environment = {
            "DOCKER_HOST": remote.url,
            "DOCKER_TLS_VERIFY": "1",
            "DOCKER_CERT_PATH": str(tls.client_dir),
        }
        sidecar = start_sidecar(docker_url="", env=environment)
        wait_until(lambda: children(registry, providers) == [rewritten_name(provider)], 10,
                   message="not rewritten through the TLS engine")  # fmt: skip
        assert sidecar.events("starting")[0]["docker"] == "from the environment"
        assert remote.requests


def test_a_wrong_docker_tls_setup_is_a_configuration_error(
    tmp_path: Path, start_sidecar: Callable[..., SidecarProcess]
) -> None:
    """Certificates that are not there: one clear line and exit code 2, not a retry loop."""
    sidecar = start_sidecar(
        docker_url="",
        ready=False,
        env={
            "DOCKER_HOST": "tcp://127.0.0.1:2376",
            "DOCKER_TLS_VERIFY": "1",
            "DOCKER_CERT_PATH": str(tmp_path / "missing"),
        },
    )
    assert sidecar.wait(timeout=30) == 2
    [line] = sidecar.log_path.read_text().splitlines()[1:]
    assert line.startswith("dubbo-sidecar: Docker TLS: ")


def test_the_sidecar_only_reads_from_docker(
    engine: DockerEngine,
    providers: str,
    registry: KazooClient,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """Behind a proxy that refuses everything but GET and HEAD (as a read-only socket proxy
    does), the sidecar rewrites a provider and removes the rewrite when the container stops,
    and never asks for anything else."""
    with ReadOnlyDockerProxy(Path(engine.url.removeprefix("unix://"))) as proxy:
        provider = start_provider()
        start_sidecar(docker_url=proxy.url)
        wait_until(lambda: children(registry, providers) == [rewritten_name(provider)], 10,
                   message="not rewritten through the read-only proxy")  # fmt: skip
        provider.stop(timeout=5)
        wait_until(lambda: children(registry, providers) == [], 10, message="not removed")
        assert proxy.refused == []
        assert {r.split(" ")[0] for r in proxy.requests} == {"GET"}
        assert any("/events" in r for r in proxy.requests)
