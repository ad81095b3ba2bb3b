"""Fixtures on real servers: one ZooKeeper and one Docker Engine per session, a fresh registry
root per test, provider containers and sidecar processes that are always cleaned up."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from docker.models.containers import Container
from kazoo.client import KazooClient

from testbed import curator
from testbed import provider as provider_script
from testbed.base_image import build_sample_app, ensure_base_image, from_line
from testbed.curator import CuratorPeer
from testbed.engine import RUN_LABEL, DockerEngine, ensure_docker_engine, remove_labelled
from testbed.ensemble import ZooKeeperEnsemble
from testbed.images import run_python, wait_for_line
from testbed.sidecar_process import SidecarProcess
from testbed.tls import ServerTls
from testbed.zookeeper import ZooKeeperServer

from .helpers import removed_at_end

INTERFACE = "com.example.DemoService"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def run_id() -> str:
    """A label value marking the Docker objects of this test run, for targeted cleanup."""
    return uuid.uuid4().hex[:12]


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory, run_id: str) -> Iterator[DockerEngine]:
    """The Docker Engine (started if none runs); this run's containers are removed at the end."""
    engine = ensure_docker_engine(tmp_path_factory.mktemp("docker"))
    try:
        yield engine
    finally:
        remove_labelled(engine.client, f"{RUN_LABEL}={run_id}")
        engine.stop()


@pytest.fixture(scope="session")
def zookeeper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperServer]:
    """A standalone ZooKeeper on all addresses, so that containers reach it via the gateway."""
    with ZooKeeperServer(tmp_path_factory.mktemp("zookeeper"), bind="0.0.0.0") as server:
        yield server


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> ServerTls:
    """A CA, the TLS servers' certificate and a client certificate, made once."""
    return ServerTls.made_in(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def tls_ensemble(
    tmp_path_factory: pytest.TempPathFactory, pki: ServerTls
) -> Iterator[ZooKeeperEnsemble]:
    """Three TLS-only servers (Netty, `secureClientPort`, `ssl.clientAuth=need`) on all
    addresses (containers reach them via the gateway), shared by the TLS tests."""
    work = tmp_path_factory.mktemp("tls-ensemble")
    with ZooKeeperEnsemble(work, bind="0.0.0.0", tls=pki) as servers:
        yield servers


@pytest.fixture
def tls_registry(tls_ensemble: ZooKeeperEnsemble, pki: ServerTls) -> Iterator[KazooClient]:
    """The test's own client of the TLS ensemble, with the client certificate."""
    client = KazooClient(hosts=tls_ensemble.connect_string, timeout=10.0, **pki.kazoo_options())
    client.start(timeout=15)
    try:
        yield client
    finally:
        client.stop()
        client.close()


@pytest.fixture(scope="session")
def base_image(engine: DockerEngine) -> str:
    """The Dockerfile's FROM image, made locally from a debootstrap root filesystem."""
    base = from_line(PROJECT_ROOT / "Dockerfile")
    ensure_base_image(engine.client, base)
    return base


@pytest.fixture(scope="session")
def sidecar_image(engine: DockerEngine, base_image: str) -> str:
    """The production image, built by scripts/build-image from the unchanged Dockerfile; its
    ID, since other checkouts sharing the engine may retag ``dubbo-nat-sidecar:test`` meanwhile."""
    tag = "dubbo-nat-sidecar:test"
    done = subprocess.run(
        [str(PROJECT_ROOT / "scripts" / "build-image"), tag],
        env={**os.environ, "DOCKER_HOST": engine.url},
        capture_output=True, text=True, timeout=540, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    image_id = done.stdout.split()[-1]  # docker build --quiet ends with the image's ID
    assert image_id.startswith("sha256:"), done.stdout
    return image_id


@pytest.fixture(scope="session")
def sample_app_image(
    engine: DockerEngine, base_image: str, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """An image of the testbed's Dubbo-style provider, built on the same base."""
    work = tmp_path_factory.mktemp("sample-app")
    return build_sample_app(engine.client, base_image, "dubbo-nat-sidecar-sample-app:test", work)


@pytest.fixture
def root() -> str:
    """A registry root of this test's own, so tests never see each other's registrations."""
    return f"/dubbo-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def providers(root: str) -> str:
    return f"{root}/{INTERFACE}/providers"


@pytest.fixture
def registry(zookeeper: ZooKeeperServer) -> Iterator[KazooClient]:
    """A plain ZooKeeper client for the test's own reads and writes."""
    client = KazooClient(hosts=zookeeper.connect_string, timeout=10.0)
    client.start(timeout=15)
    try:
        yield client
    finally:
        client.stop()
        client.close()


@pytest.fixture
def start_provider(
    engine: DockerEngine, zookeeper: ZooKeeperServer, run_id: str, root: str
) -> Iterator[Callable[..., Container]]:
    """Start ``testbed/provider.py`` in a container publishing 20880 on a random host port;
    returns once it has registered under this test's root."""

    def start(
        *extra_args: str,
        publish_all: bool = True,
        on: DockerEngine | None = None,
        connect: str | None = None,
        healthcheck: dict[str, object] | None = None,
        ports: dict[str, object] | None = None,
        network: str | None = None,
        network_mode: str | None = None,
        wait: bool = True,
        labels: dict[str, str] | None = None,
        volumes: dict[str, str] | None = None,
    ) -> Container:
        """``on``: another Docker Engine; ``connect``: ZooKeeper as seen from the container;
        the rest as in ``testbed.images.run_python``; ``wait``: until it has registered."""
        docker_engine = on or engine
        zk_from_container = connect or f"{docker_engine.bridge_gateway()}:{zookeeper.port}"
        container = run_python(
            docker_engine.client,
            Path(provider_script.__file__),
            [
                *("--zookeeper", zk_from_container, "--root", root, "--interface", INTERFACE),
                *("--session-timeout", "4", *extra_args),
            ],
            name_prefix="testbed-provider",
            labels={RUN_LABEL: run_id, **(labels or {})},
            publish_all=publish_all,
            healthcheck=healthcheck,
            ports=ports,
            network=network,
            network_mode=network_mode,
            volumes=volumes,
        )
        started.append(container)
        if wait:
            wait_for_line(container, "registered ", timeout=30)
        return container

    with removed_at_end() as started:
        yield start


@pytest.fixture
def start_sidecar(
    tmp_path: Path, zookeeper: ZooKeeperServer, engine: DockerEngine, root: str
) -> Iterator[Callable[..., SidecarProcess]]:
    """Start ``dubbo-sidecar run`` on this test's root, advertising 127.0.0.1; every process
    started is killed at the end."""
    started: list[SidecarProcess] = []

    def start(
        *extra_args: str,
        ready: bool = True,
        connect: str | None = None,
        docker_url: str | None = None,
        advertise_host: str | None = "127.0.0.1",
        env: dict[str, str] | None = None,
    ) -> SidecarProcess:
        """``connect``/``docker_url``: another ZooKeeper or Docker Engine than the defaults
        (``docker_url=""``: none given, the environment decides); ``advertise_host`` None:
        none given; ``env``: extra environment."""
        args = [
            *("--zookeeper", connect or zookeeper.connect_string, "--root", root),
            *(() if docker_url == "" else ("--docker-url", docker_url or engine.url)),
            *(("--advertise-host", advertise_host) if advertise_host else ()),
            *("--session-timeout", "10", "--log-level", "debug", "--listen", "127.0.0.1:0"),
            *("--state-file", str(tmp_path / f"state-{len(started)}.json"), *extra_args),
        ]
        log = tmp_path / f"sidecar-{len(started)}.log"
        sidecar = SidecarProcess(log, args, env=env).start()
        started.append(sidecar)
        if ready:
            sidecar.wait_for_event("resync_done")
        return sidecar

    try:
        yield start
    finally:
        for sidecar in started:
            if sidecar.running:
                sidecar.kill()


@pytest.fixture(scope="session")
def curator_classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Curator peer (testbed/java), compiled once per test session."""
    return curator.build(tmp_path_factory.mktemp("curator-classes"))


@pytest.fixture
def start_curator_peer(
    engine: DockerEngine,
    zookeeper: ZooKeeperServer,
    curator_classes: Path,
    run_id: str,
    tmp_path: Path,
) -> Iterator[Callable[..., CuratorPeer]]:
    """Start a Curator peer on ``base_path``: in a container publishing 20880 (``host=True``:
    on this host, as a consumer elsewhere would run); every peer started is closed at the end."""
    started: list[CuratorPeer] = []

    def start(*, base_path: str, host: bool = False) -> CuratorPeer:
        stderr = tmp_path / f"curator-peer-{len(started)}.stderr"
        if host:
            peer = CuratorPeer.on_host(
                curator_classes, zookeeper.connect_string, base_path=base_path, stderr=stderr
            )
        else:
            peer = CuratorPeer.in_container(
                engine, curator_classes, f"{engine.bridge_gateway()}:{zookeeper.port}",
                labels={RUN_LABEL: run_id}, base_path=base_path, stderr=stderr,
            )  # fmt: skip
        started.append(peer)
        return peer

    try:
        yield start
    finally:
        for peer in started:
            peer.close()
