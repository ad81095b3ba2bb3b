"""The production image: the real Dockerfile, built on a locally made base, run for real."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from docker.models.containers import Container
from kazoo.client import KazooClient

from testbed.engine import LABELS, RUN_LABEL, DockerEngine
from testbed.polling import free_port, wait_until
from testbed.zookeeper import ZooKeeperServer

from .helpers import children, removed_at_end, rewritten_name

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


@pytest.fixture
def image(sidecar_image: str) -> str:
    return sidecar_image


def test_image_is_small_non_root_and_without_build_tools(engine: DockerEngine, image: str) -> None:
    """The final stage runs as a non-root user, has no compiler, and its entry point is the
    command line."""
    config = engine.client.images.get(image).attrs["Config"]
    assert config["User"] == "10001"
    assert config["Entrypoint"] == ["dubbo-sidecar"]
    assert config["Healthcheck"]["Test"] == ["CMD", "dubbo-sidecar", "health"]
    probe = (
        "import shutil, os; "
        "print(shutil.which('gcc'), shutil.which('cc'), os.path.exists('/root/.bash_history'))"
    )
    out = engine.client.containers.run(
        image, ["-c", probe], entrypoint="python3", remove=True, labels=LABELS
    )
    assert out.decode().split() == ["None", "None", "False"]


@pytest.fixture
def sidecar_container(
    engine: DockerEngine, image: str, zookeeper: ZooKeeperServer, root: str, run_id: str
) -> Iterator[Callable[[], Container]]:

    def start() -> Container:
        socket_path = engine.url.removeprefix("unix://")
        container = engine.client.containers.run(
            image,
            ["run", "--zookeeper", zookeeper.connect_string, "--root", root,
             "--advertise-host", "127.0.0.1", "--log-format", "json"],
            detach=True,
            network_mode="host",
            group_add=[str(os.stat(socket_path).st_gid)],
            volumes={socket_path: {"bind": "/var/run/docker.sock", "mode": "ro"}},
            environment={"DUBBO_SIDECAR_LISTEN": f"127.0.0.1:{free_port('127.0.0.1')}"},
            labels={**LABELS, RUN_LABEL: run_id},
        )  # fmt: skip
        started.append(container)
        return container

    with removed_at_end() as started:
        yield start


def test_image_rewrites_a_registration_and_turns_healthy(
    providers: str,
    registry: KazooClient,
    start_provider: Callable[..., Container],
    sidecar_container: Callable[[], Container],
) -> None:
    """The sidecar image, run with the Docker socket (read-only, its group added) on the host
    network, rewrites a provider's registration, and its HEALTHCHECK reports healthy."""
    provider = start_provider()
    sidecar = sidecar_container()

    def rewritten() -> bool:
        sidecar.reload()
        assert sidecar.status == "running", sidecar.logs().decode()[-2000:]
        return children(registry, providers) == [rewritten_name(provider)]

    try:
        wait_until(rewritten, 30, message="the image did not rewrite the registration")
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; its log:\n{sidecar.logs().decode()[-3000:]}") from None

    def healthy() -> bool:
        sidecar.reload()
        return sidecar.attrs["State"]["Health"]["Status"] == "healthy"

    wait_until(healthy, 40, message="the container never turned healthy")
