"""The docker-compose examples: all validate; the per-app and both proxy ones run end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from docker.models.containers import Container
from kazoo.client import KazooClient

import sidecar
from sidecar import urls
from sidecar.model import Endpoint
from testbed.engine import DockerEngine
from testbed.networks import container_ip, published_port
from testbed.polling import wait_until
from testbed.zookeeper import ZooKeeperServer

from .helpers import children, pong
from .proxy_helpers import Listings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
COMPOSE = Path(__file__).resolve().parents[2] / "deploy" / "compose"
# The test's own images and registry root; the example's own settings stay as they are (the
# app's registry address and the sidecar's command included).
OVERRIDE = """\
services:
  app:
    image: {app_image}
    command: ["--root", "{root}", "--application", "shop"]
  dubbo-sidecar:
    image: {sidecar_image}
    environment:
      DUBBO_SIDECAR_ROOT: "{root}"
      DUBBO_SIDECAR_LOG_FORMAT: json
      DUBBO_SIDECAR_LOG_LEVEL: debug
"""
# The capture example's namespace holder runs the sidecar image too.
POD_OVERRIDE = """\
  pod:
    image: {sidecar_image}
"""
EXAMPLES = [
    "per-app/docker-compose.yml", "per-host/docker-compose.yml",
    "per-host/docker-compose.socket-proxy.yml", "per-host/docker-compose.tls.yml",
    "proxy/docker-compose.yml", "proxy/docker-compose.capture.yml",
]  # fmt: skip


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
        "ZOOKEEPER_PORT": str(zookeeper.port),
        "HOST_IP": "127.0.0.1",
        "DOCKER_GID": str(os.stat(socket).st_gid),
        "DOCKER_SOCKET": socket,
        "COMPOSE_PROJECT_NAME": f"tb{uuid.uuid4().hex[:8]}",
    }


@pytest.mark.parametrize("example", EXAMPLES)
def test_examples_are_valid_compose_files(example: str, compose_env: dict[str, str]) -> None:
    """`docker-compose config` accepts each example with its variables set."""
    done = compose("config", "--quiet", env=compose_env, files=[COMPOSE / example])
    assert done.returncode == 0, done.stderr
    assert (COMPOSE / example).with_name("README.md").exists()


@pytest.mark.parametrize("example", EXAMPLES)
def test_examples_run_this_releases_image(example: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unless SIDECAR_IMAGE says otherwise, every service of an example that runs the
    sidecar's image runs the one tagged with the package's version, named once per file."""
    monkeypatch.delenv("SIDECAR_IMAGE", raising=False)
    env = {"ZOOKEEPER": "zookeeper:2181", "HOST_IP": "192.0.2.1"}
    done = compose("config", env=env, files=[COMPOSE / example])
    assert done.returncode == 0, done.stderr
    images = {s["image"] for s in yaml.safe_load(done.stdout)["services"].values()}
    ours = {image for image in images if "sidecar" in image}
    assert ours == {f"ghcr.io/dubbo-nat-sidecar/dubbo-nat-sidecar:{sidecar.__version__}"}
    assert (COMPOSE / example).read_text().count("ghcr.io/dubbo-nat-sidecar") == 1


class Project:
    """One example brought up with the test's images and root; taken down at the end."""

    def __init__(self, files: list[Path], env: dict[str, str], engine: DockerEngine) -> None:
        self.files, self.env, self.engine = files, env, engine

    def up(self) -> None:
        done = compose("up", "-d", env=self.env, files=self.files)
        assert done.returncode == 0, done.stderr + self.logs()[-4000:]

    def down(self) -> None:
        compose("down", "--volumes", "--timeout", "5", env=self.env, files=self.files)

    def container(self, service: str) -> Container:
        [found] = self.engine.client.containers.list(
            filters={"label": [f"com.docker.compose.project={self.env['COMPOSE_PROJECT_NAME']}",
                               f"com.docker.compose.service={service}"]}
        )  # fmt: skip
        return found

    def logs(self, *services: str) -> str:
        return compose("logs", "--no-color", *services, env=self.env, files=self.files).stdout

    def events(self, service: str) -> list[dict[str, Any]]:
        """The service's JSON log lines (compose prefixes each with ``name  | ``)."""
        found = []
        for line in self.logs(service).splitlines():
            text = line.partition("| ")[2]
            if text.startswith("{"):
                found.append(json.loads(text))
        return found


@pytest.fixture
def project(
    tmp_path: Path,
    compose_env: dict[str, str],
    engine: DockerEngine,
    sidecar_image: str,
    sample_app_image: str,
    root: str,
) -> Iterator[Callable[[str], Project]]:
    """``project(example)``: the example with the test's images and root, not yet up."""
    started: list[Project] = []

    def make(example: str) -> Project:
        override = tmp_path / "override.yml"
        text = OVERRIDE + (POD_OVERRIDE if "capture" in example else "")
        override.write_text(
            text.format(app_image=sample_app_image, sidecar_image=sidecar_image, root=root)
        )
        started.append(Project([COMPOSE / example, override], compose_env, engine))
        return started[-1]

    try:
        yield make
    finally:
        for one in started:
            one.down()


def test_per_app_example_runs_end_to_end(
    project: Callable[[str], Project], registry: KazooClient, root: str
) -> None:
    """`docker-compose up` of the per-app example with locally built images: the app
    registers its container address, its sidecar (in the app's network namespace, finding
    its app by itself) rewrites it to HOST_IP and the published port."""
    example = project("per-app/docker-compose.yml")
    example.up()
    app = example.container("app")
    bindings = app.ports["20880/tcp"]
    assert bindings, "20880 is not published"
    port = int(bindings[0]["HostPort"])
    providers = f"{root}/com.example.DemoService/providers"

    def rewritten() -> bool:
        names = children(registry, providers)
        return [urls.parse(n).endpoint for n in names] == [Endpoint("127.0.0.1", port)]

    try:
        wait_until(rewritten, 60)
    except TimeoutError:
        pytest.fail(f"not rewritten:\n{example.logs()[-4000:]}")
    scopes = [e["scope"] for e in example.events("dubbo-sidecar") if e["event"] == "scope_chosen"]
    assert scopes == [f"per-app sidecar of {app.name}"]


@pytest.mark.parametrize(
    ("example", "owner"),
    [("proxy/docker-compose.yml", "app"), ("proxy/docker-compose.capture.yml", "pod")],
)
def test_proxy_examples_register_the_published_address_from_the_start(
    project: Callable[[str], Project],
    registry: KazooClient,
    root: str,
    example: str,
    owner: str,
) -> None:
    """`docker-compose up` of each proxy example (the app dialling the sidecar's proxy, or
    keeping ZooKeeper's address under capture): a consumer watching from before the start
    only ever sees the app at HOST_IP and the published port, never at its container
    address, and reaches it there; the sidecar's proxy made that rewrite."""
    providers = f"{root}/com.example.DemoService/providers"
    listings = Listings(registry, providers)
    running = project(example)
    running.up()
    namespace = running.container(owner)
    container = Endpoint(container_ip(namespace), 20880)
    published = Endpoint("127.0.0.1", published_port(namespace, "20880/tcp"))

    def registered() -> bool:
        return any(names for names in listings.all())

    try:
        wait_until(registered, 60)
    except TimeoutError:
        pytest.fail(f"never registered:\n{running.logs()[-4000:]}")
    seen = {urls.parse(name).endpoint for names in listings.all() for name in names}
    assert seen == {published}
    assert pong(published.host, published.port).startswith("pong shop ")
    rewrites = [e for e in running.events("dubbo-sidecar") if e["event"] == "proxy_rewrite"]
    assert [(e["original"], e["rewritten"]) for e in rewrites] == [(str(container), str(published))]
