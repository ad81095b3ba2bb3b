"""The production image: the real Dockerfile, built on a locally made base, run for real."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from docker.models.containers import Container
from kazoo.client import KazooClient

from sidecar import urls
from sidecar.model import Endpoint
from testbed.engine import LABELS, RUN_LABEL, DockerEngine
from testbed.polling import free_port, wait_until
from testbed.zookeeper import ZooKeeperServer

from .helpers import children, original_name, removed_at_end, rewritten_name
from .proxy_helpers import Listings

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
            ["run", "--root", root, "--log-format", "json"],
            detach=True,
            network_mode="host",
            group_add=[str(os.stat(socket_path).st_gid)],
            volumes={socket_path: {"bind": "/var/run/docker.sock", "mode": "ro"}},
            # The HEALTHCHECK's `health` shares this environment, settings of `run` included.
            environment={
                "DUBBO_SIDECAR_LISTEN": f"127.0.0.1:{free_port('127.0.0.1')}",
                "DUBBO_SIDECAR_ZOOKEEPER": zookeeper.connect_string,
                "DUBBO_SIDECAR_ADVERTISE_HOST": "127.0.0.1",
                "DUBBO_SIDECAR_RESYNC_SECONDS": "30",
            },
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


def events_of(container: Container, name: str) -> list[dict[str, Any]]:
    """The container's JSON log lines whose event is ``name``."""
    lines = container.logs().decode().splitlines()
    return [e for e in map(json.loads, filter(lambda x: x.startswith("{"), lines))
            if e["event"] == name]  # fmt: skip


def test_image_captures_as_root_with_net_admin_only(
    engine: DockerEngine,
    image: str,
    zookeeper: ZooKeeperServer,
    registry: KazooClient,
    providers: str,
    run_id: str,
    start_provider: Callable[..., Container],
) -> None:
    """The image under the Kubernetes capture pod's security context (root, every capability
    dropped but NET_ADMIN, a read-only root filesystem; no Docker, a static mapping): an app
    in its network namespace that keeps ZooKeeper's real address is only ever seen
    registered at the published address."""
    listings = Listings(registry, providers)
    with removed_at_end() as started:
        sidecar = engine.client.containers.run(
            image,
            ["run", "--zookeeper", f"{engine.bridge_gateway()}:{zookeeper.port}",
             "--docker-url", "none", "--static-ports", "20880:30880",
             "--advertise-host", "127.0.0.1", "--proxy-listen", "127.0.0.1:15181",
             "--proxy-capture", str(zookeeper.port), "--log-format", "json"],
            detach=True, user="0", cap_drop=["ALL"], cap_add=["NET_ADMIN"], read_only=True,
            tmpfs={"/var/lib/dubbo-nat-sidecar": ""}, labels={**LABELS, RUN_LABEL: run_id},
        )  # fmt: skip
        started.append(sidecar)
        wait_until(lambda: events_of(sidecar, "lease_held"), 30,
                   message=f"no lease: {sidecar.logs().decode()[-3000:]}")  # fmt: skip
        [listening] = events_of(sidecar, "proxy_listening")
        assert listening["capture"] == [zookeeper.port]
        app = start_provider(publish_all=False, network_mode=f"container:{sidecar.id}")
        name = urls.parse(original_name(app)).with_endpoint(Endpoint("127.0.0.1", 30880))
        listings.wait_for(name)
        assert {n for listing in listings.all() for n in listing} == {name}
