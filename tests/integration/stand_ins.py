"""Stand-in hosts on one machine for the fleet's integration tests: host ``i`` is the address
127.0.0.{i + 2}. Its sidecar advertises that address and maps, without Docker, one container
at the same address on every host (as every default bridge's first container has) with port
20880 published on 30000 + i; its providers' sessions connect from that address."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from kazoo.client import KazooClient

from sidecar import urls
from sidecar.model import Endpoint
from testbed.dubbo_url import java_url_encode
from testbed.sessions import client_from, expire_session
from testbed.sidecar_process import SidecarProcess
from testbed.zookeeper import ZooKeeperServer

from .conftest import INTERFACE

CONTAINER = "10.66.0.5"  # every host's provider container has this address


def host_address(i: int) -> str:
    return f"127.0.0.{i + 2}"


class StandIns:
    """The sidecars of stand-in hosts; everything started is killed by ``close``."""

    def __init__(
        self, tmp_path: Path, zookeeper: ZooKeeperServer, root: str, extra: Sequence[str] = ()
    ) -> None:
        self._tmp = tmp_path
        self._zookeeper = zookeeper
        self._root = root
        self._extra = tuple(extra)
        self.started: list[SidecarProcess] = []

    def start(self, i: int, wait: bool = True) -> SidecarProcess:
        """Host ``i``'s sidecar (its state file kept across restarts), up and through its
        first resync unless not ``wait``."""
        mapping = self._tmp / f"ports-{i}.toml"
        mapping.write_text(f'addresses = ["{CONTAINER}"]\n[ports]\n20880 = {30000 + i}\n')
        sidecar = SidecarProcess(
            self._tmp / f"host-{i}-{len(self.started)}.log",
            [
                *("--zookeeper", self._zookeeper.connect_string, "--root", self._root),
                *("--docker-url", "none", "--static-file", str(mapping), "--listen", ""),
                *("--advertise-host", host_address(i), "--session-timeout", "4"),
                *("--state-file", str(self.state_file(i)), "--log-level", "debug"),
                *self._extra,
            ],
            env={"POD_UID": f"host-{i}"},
        ).start()
        self.started.append(sidecar)
        if wait:
            sidecar.wait_for_event("resync_done")
        return sidecar

    def state_file(self, i: int) -> Path:
        return self._tmp / f"state-{i}.json"

    def end_session(self, i: int, sidecar: SidecarProcess) -> None:
        """Kill host ``i``'s sidecar and end its session (as its session timeout would)."""
        state = json.loads(self.state_file(i).read_text())
        sidecar.kill()
        expire_session(self._zookeeper.connect_string, int(state["session_id"]),
                       bytes.fromhex(state["password"]))  # fmt: skip

    def close(self) -> None:
        for sidecar in self.started:
            if sidecar.running:
                sidecar.kill()


def register(
    zookeeper: ZooKeeperServer, root: str, address: str, app: str, port: int = 30000
) -> tuple[KazooClient, str]:
    """A provider whose session connects from ``address``, registering the container's
    address; and the name its host's sidecar gives the rewrite (published on ``port``)."""
    client = client_from(zookeeper.connect_string, address, timeout=30)
    name = java_url_encode(f"dubbo://{CONTAINER}:20880/{INTERFACE}?application={app}"
                           f"&interface={INTERFACE}&side=provider")  # fmt: skip
    client.create(f"{root}/{INTERFACE}/providers/{name}", b"", ephemeral=True, makepath=True)
    return client, urls.parse(name).with_endpoint(Endpoint(address, port))
