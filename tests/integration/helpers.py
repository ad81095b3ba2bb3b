"""What the integration tests ask of the registry, of a provider container and of a stand-in
host's provider."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import docker.errors
import requests
from docker.models.containers import Container
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

import sidecar
from sidecar import records, urls
from sidecar.model import Endpoint
from sidecar.records import RECORDS_ROOT
from testbed import sidecar_main
from testbed.engine import RUN_LABEL, DockerEngine
from testbed.hosts import Host, Hosts
from testbed.images import output_lines, run_python, wait_for_line
from testbed.networks import published_port


def remove_left_behind(registry: KazooClient, *prefixes: str) -> None:
    """Delete what outlives a test's sessions, for the later tests on the same server: every
    node under ``prefixes`` (persistent ones included) and the sidecars' records of nodes
    there."""
    for engine in children(registry, RECORDS_ROOT):
        for name in children(registry, f"{RECORDS_ROOT}/{engine}"):
            path = f"{RECORDS_ROOT}/{engine}/{name}"
            with contextlib.suppress(NoNodeError):
                found = records.decode(registry.get(path)[0])
                if found is not None and found[0].path.startswith(prefixes):
                    registry.delete(path)
    for prefix in prefixes:
        with contextlib.suppress(NoNodeError):
            registry.delete(prefix, recursive=True)


def children(registry: KazooClient, path: str) -> list[str]:
    """The node names under ``path``, sorted (none if it does not exist)."""
    return sorted(registry.get_children(path)) if registry.exists(path) else []


def registered(provider: Container) -> list[str]:
    """Every node path the provider announced it registered, in order."""
    return [line.removeprefix("registered ") for line in output_lines(provider, "registered ")]


def original_name(provider: Container) -> str:
    """The node name of the provider's first registration."""
    return wait_for_line(provider, "registered ").rsplit("/", 1)[1]


def rewritten_name(provider: Container) -> str:
    """That name as the sidecar should rewrite it: 127.0.0.1 and the published 20880."""
    port = published_port(provider, "20880/tcp")
    return urls.parse(original_name(provider)).with_endpoint(Endpoint("127.0.0.1", port))


def owner(registry: KazooClient, path: str) -> int:
    """The session owning the node at ``path``."""
    return int(registry.get(path)[1].ephemeralOwner)


def pong(host: str, port: int) -> str:
    """The testbed provider's answer to one ping at ``host:port``."""
    with socket.create_connection((host, port), timeout=3) as conn:
        conn.sendall(b"ping\n")
        return conn.makefile("rb").readline().decode().strip()


def get(url: str) -> tuple[int, str]:
    """Status and body of a GET (an HTTP error status is an answer too)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


SIDECAR_SOURCE = Path(sidecar.__file__).parent  # mounted into containers that run the sidecar


def sidecar_beside(
    engine: DockerEngine,
    app: Container,
    args: Sequence[str],
    run_id: str,
    volumes: Mapping[str, str] | None = None,
) -> Container:
    """``dubbo-sidecar run args`` from this checkout in a container sharing ``app``'s network
    namespace (compose's ``network_mode: service:app``, a Kubernetes pod), HOST_IP 127.0.0.1;
    ``volumes`` mounted at the same paths."""
    mounts = {**(volumes or {}), str(SIDECAR_SOURCE): str(SIDECAR_SOURCE)}
    return run_python(
        engine.client,
        Path(sidecar_main.__file__),
        ["run", *args],
        name_prefix="testbed-sidecar",
        publish_all=False,
        network_mode=f"container:{app.id}",
        env={"HOST_IP": "127.0.0.1"},
        labels={RUN_LABEL: run_id},
        volumes=mounts,
    )


def one_shot(
    command: str, connect: str, root: str, docker_url: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    """``dubbo-sidecar plan`` or ``status`` run once on this registry and engine, advertising
    127.0.0.1; its output, whatever its exit code."""
    return subprocess.run(
        [sys.executable, "-m", "sidecar", command, "--zookeeper", connect, "--root", root,
         "--docker-url", docker_url, "--advertise-host", "127.0.0.1", *extra],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def metric(text: str, name: str) -> float:
    """The value of a metric in Prometheus text (summed over its label sets)."""
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name)]
    assert values, f"{name} not exported"
    return sum(values)


@contextlib.contextmanager
def removed_at_end() -> Iterator[list[Container]]:
    """A list to put started containers in; each is removed when the block ends (a test's
    own engine may be gone already: it removes its containers itself)."""
    started: list[Container] = []
    try:
        yield started
    finally:
        for container in started:
            with contextlib.suppress(docker.errors.DockerException, requests.RequestException):
                container.remove(force=True)


# Registers argv[2] (ephemeral) through argv[1], says so, and keeps the session until its
# input ends.
_REGISTER_AND_HOLD = """
import sys
from kazoo.client import KazooClient
zk = KazooClient(hosts=sys.argv[1]); zk.start(timeout=30)
zk.create(sys.argv[2], b"", ephemeral=True, makepath=True)
print("registered", flush=True)
sys.stdin.read()
zk.stop(); zk.close()
"""


@contextlib.contextmanager
def registered_from(host: Host, connect: str, path: str) -> Iterator[None]:
    """A provider on stand-in ``host`` holds ``path`` (ephemeral) registered through
    ``connect`` while the block runs; its session ends with it."""
    argv = [sys.executable, "-c", _REGISTER_AND_HOLD, connect, path]
    provider = subprocess.Popen(Hosts.command(host, argv), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert provider.stdout is not None
        assert provider.stdout.readline().strip() == "registered"
        yield
    finally:
        provider.communicate("", timeout=30)
