"""Podman's Docker-compatible API, where it answers differently from Docker Engine: the
engine's identity, a namespace shared between containers, network events."""

from __future__ import annotations

import itertools
from typing import Any

import docker
import pytest

from sidecar.sources.docker import DockerEngine, _container_of, to_container

APP_ID = "290b508cee9de79734bcdc82faf1c8b856751ad771b1a21b2772366e30bc25d5"
SIDECAR_ID = "c3b9998dac7130df08177cc0c5b87b76d3a9870e934969675c8e6d5451adb6b8"
# GET /containers/{id}/json from Podman 4.3 (trimmed) for a container started with
# --network container:<app>: Podman repeats the app's network and bindings (Docker shows none).
JOINED = {
    "Id": SIDECAR_ID,
    "Name": "/testbed-6bf19e43",
    "State": {"Status": "running", "Running": True, "Health": {"Status": ""}},
    "HostConfig": {"NetworkMode": f"container:{APP_ID}", "PortBindings": {}},
    "NetworkSettings": {
        "Ports": {"20880/tcp": [{"HostIp": "", "HostPort": "40349"}]},
        "Networks": {"testbed-26d30656": {"IPAddress": "10.89.0.3", "GlobalIPv6Address": ""}},
    },
    "Config": {"Labels": {"dubbo-nat-sidecar-testbed": "1"}},
}


def test_a_container_in_anothers_namespace_claims_none_of_its_addresses() -> None:
    """The namespace's address and bindings stay the app's alone, so a registration from it
    is not ambiguous and a per-app sidecar beside the app finds exactly one owner."""
    container = to_container(JOINED)
    assert container.network_mode == f"container:{APP_ID}"
    assert container.addresses == ()
    assert container.published == ()


class FakeApi:
    """Answers /version and /info as Podman 4.3 does: a new engine ID on every /info."""

    ids = (f"fc570916-f65e-4f2d-b0a3-{n:012x}" for n in itertools.count())

    def __init__(self, **kwargs: Any) -> None:
        pass

    def version(self) -> dict[str, Any]:
        return {"Components": [{"Name": "Podman Engine", "Version": "4.3.1"},
                               {"Name": "Conmon", "Version": "2.1.6"}]}  # fmt: skip

    def info(self) -> dict[str, Any]:
        return {"ID": next(self.ids), "Name": "node-7",
                "DockerRootDir": "/var/lib/containers/storage"}  # fmt: skip


class FakeDockerApi(FakeApi):
    def version(self) -> dict[str, Any]:
        return {"Components": [{"Name": "Engine", "Version": "20.10.24"}]}

    def info(self) -> dict[str, Any]:
        return {"ID": "LQ6N:ABCD:EFGH", "Name": "node-7"}


def test_podmans_identity_is_its_storage_on_its_host_not_its_changing_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every sidecar of one Podman (restarted, per-host or per-app) names the same engine,
    although Podman answers a new ID each time; Docker's ID is kept as it is."""
    monkeypatch.setattr(docker, "APIClient", FakeApi)
    first = DockerEngine("unix:///run/podman/podman.sock", {}).engine_id()
    again = DockerEngine("unix:///run/podman/podman.sock", {}).engine_id()
    assert first == again
    assert first.startswith("podman-")
    assert first.endswith("@node-7")
    monkeypatch.setattr(docker, "APIClient", FakeDockerApi)
    assert DockerEngine("unix:///var/run/docker.sock", {}).engine_id() == "LQ6N:ABCD:EFGH@node-7"


def test_network_events_name_the_container_as_either_engine_sends_it() -> None:
    """Docker names the container in an attribute of a network event, Podman as the actor;
    network events that concern no container are ignored."""
    docker_event = {"Type": "network", "Action": "connect",
                    "Actor": {"ID": "f00d" * 16, "Attributes": {"container": APP_ID}}}  # fmt: skip
    podman_event = {"Type": "network", "Action": "disconnect",
                    "Actor": {"ID": APP_ID, "Attributes": {"name": "testbed-6b"}}}  # fmt: skip
    removed = {"Type": "network", "Action": "remove", "Actor": {"ID": "f00d" * 16}}
    assert _container_of(docker_event) == APP_ID
    assert _container_of(podman_event) == APP_ID
    assert _container_of(removed) is None
