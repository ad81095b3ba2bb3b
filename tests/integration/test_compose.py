"""The docker-compose examples: both validate, and the per-app one runs end to end."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from sidecar import urls
from sidecar.model import Endpoint
from testbed.engine import DockerEngine
from testbed.polling import wait_until
from testbed.zookeeper import ZooKeeperServer

from .helpers import children

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
COMPOSE = Path(__file__).resolve().parents[2] / "deploy" / "compose"
# The test's own app: the sample provider image, told where ZooKeeper and the root are.
OVERRIDE = """\
services:
  app:
    image: {app_image}
    command: ["--zookeeper", "{zookeeper}", "--root", "{root}", "--application", "shop"]
  dubbo-sidecar:
    image: {sidecar_image}
    command: ["run", "--root", "{root}", "--log-format", "json", "--log-level", "debug"]
"""


def compose(*args: str, env: dict[str, str], files: list[Path]) -> subprocess.CompletedProcess[str]:
    if shutil.which("docker-compose") is None:
        pytest.fail("docker-compose is not installed (Debian: apt-get install docker-compose)")
    flags = [arg for f in files for arg in ("-f", str(f))]
    return subprocess.run(
        ["docker-compose", *flags, *args], env={**os.environ, **env},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


@pytest.fixture
def compose_env(engine: DockerEngine, zookeeper: ZooKeeperServer) -> dict[str, str]:
    socket = engine.url.removeprefix("unix://")
    return {
        "DOCKER_HOST": engine.url,
        "ZOOKEEPER": f"{engine.bridge_gateway()}:{zookeeper.port}",
        "HOST_IP": "127.0.0.1",
        "DOCKER_GID": str(os.stat(socket).st_gid),
        "DOCKER_SOCKET": socket,
        "COMPOSE_PROJECT_NAME": f"tb{uuid.uuid4().hex[:8]}",
    }


@pytest.mark.parametrize(
    "example",
    ["per-app/docker-compose.yml", "per-host/docker-compose.yml",
     "per-host/docker-compose.socket-proxy.yml"],
)  # fmt: skip
def test_examples_are_valid_compose_files(example: str, compose_env: dict[str, str]) -> None:
    """`docker-compose config` accepts each example with its variables set."""
    done = compose("config", "--quiet", env=compose_env, files=[COMPOSE / example])
    assert done.returncode == 0, done.stderr
    assert (COMPOSE / example).with_name("README.md").exists()


@pytest.fixture
def per_app_project(
    tmp_path: Path,
    compose_env: dict[str, str],
    sidecar_image: str,
    sample_app_image: str,
    root: str,
) -> Iterator[list[Path]]:
    override = tmp_path / "override.yml"
    override.write_text(
        OVERRIDE.format(
            app_image=sample_app_image,
            sidecar_image=sidecar_image,
            zookeeper=compose_env["ZOOKEEPER"],
            root=root,
        )
    )
    files = [COMPOSE / "per-app" / "docker-compose.yml", override]
    try:
        yield files
    finally:
        compose("down", "--volumes", "--timeout", "5", env=compose_env, files=files)


def test_per_app_example_runs_end_to_end(
    per_app_project: list[Path],
    compose_env: dict[str, str],
    engine: DockerEngine,
    registry: KazooClient,
    root: str,
) -> None:
    """`docker-compose up` of the per-app example with locally built images: the app
    registers its container address, its sidecar (in the app's network namespace, finding
    its app by itself) rewrites it to HOST_IP and the published port."""
    done = compose("up", "-d", env=compose_env, files=per_app_project)
    assert done.returncode == 0, done.stderr
    project = compose_env["COMPOSE_PROJECT_NAME"]
    [app] = engine.client.containers.list(
        filters={"label": [f"com.docker.compose.project={project}",
                           "com.docker.compose.service=app"]}
    )  # fmt: skip
    port = int(app.ports["20880/tcp"][0]["HostPort"])
    providers = f"{root}/com.example.DemoService/providers"

    def rewritten() -> bool:
        names = children(registry, providers)
        return [urls.parse(n).endpoint for n in names] == [Endpoint("127.0.0.1", port)]

    try:
        wait_until(rewritten, 60)
    except TimeoutError:
        logs = compose("logs", "--no-color", env=compose_env, files=per_app_project)
        pytest.fail(f"not rewritten:\n{logs.stdout[-4000:]}")
    logs = compose("logs", "--no-color", "dubbo-sidecar", env=compose_env, files=per_app_project)
    assert f'"scope": "per-app sidecar of {app.name}"' in logs.stdout
