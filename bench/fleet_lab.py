"""The fleet for bench/fleet: per stand-in host, a sidecar and an agent for its providers.

Every host's "container" has the same address (as every Docker default bridge hands out the
same addresses) and the same static mapping, so that only the ownership proof (which host's
session registered a node) tells the hosts' registrations apart. No Docker is involved.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.workload import (
    HOST_PORT_OFFSET,
    MAPPED_ADDRESS,
    check_stopping,
    mapping_file,
    process_cpu,
    process_status,
)
from sidecar import urls
from sidecar.model import Endpoint
from testbed.dubbo_url import java_url_encode
from testbed.hosts import Host, Hosts
from testbed.polling import wait_until
from testbed.sidecar_process import SidecarProcess

CHECKOUT = Path(__file__).resolve().parent.parent
CONTAINER_ADDRESS = MAPPED_ADDRESS  # every host's container, as on every default bridge
FOREIGN_ADDRESS = "10.97.0.1"  # an address no host maps: another host's, for all of them
PORTS = 10  # mapped container ports per host: FIRST_PORT... -> +HOST_PORT_OFFSET


def node_name(host: str, port: int, interface: str, application: str) -> str:
    """A provider registration's node name; ``application`` keeps names of hosts apart."""
    url = (
        f"dubbo://{host}:{port}/{interface}?anyhost=true&application={application}"
        f"&dubbo=2.0.2&interface={interface}&methods=a,b,c&side=provider"
        "&timestamp=1795889781982"
    )
    return java_url_encode(url)


def rewritten_for(host: Host, name: str) -> str:
    """What ``host``'s sidecar makes of a registration of its container's address."""
    endpoint = urls.parse(name).endpoint
    return urls.parse(name).with_endpoint(Endpoint(host.address, endpoint.port + HOST_PORT_OFFSET))


class Agent:
    """bench/fleet_agent.py running as one host: its providers' ZooKeeper sessions."""

    def __init__(self, host: Host, connect: str, log: Path) -> None:
        argv = [sys.executable, "-m", "bench.fleet_agent", "--zookeeper", connect]
        with log.open("ab") as err:
            self._process = subprocess.Popen(
                Hosts.command(host, argv), cwd=CHECKOUT, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=err, text=True,
            )  # fmt: skip

    def send(self, command: dict[str, Any]) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps(command) + "\n")
        self._process.stdin.flush()

    def answer(self) -> dict[str, Any]:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"fleet agent exited with {self._process.wait()}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def close(self) -> None:
        """Close its sessions (its registrations go) and wait; kill it if it hangs."""
        try:
            self.send({"quit": True})
            self._process.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self._process.kill()
            self._process.wait()


class Fleet:
    """``count`` hosts, each with an agent and a sidecar on ``root``."""

    def __init__(
        self, hosts: Hosts, connect: str, count: int, root: str, work: Path,
        extra: Iterable[str] = (),
    ) -> None:  # fmt: skip
        """``connect``: the ZooKeeper connect string (servers on the hosts' bridge)."""
        self.hosts = hosts.ensure(count)
        self._connect = connect
        self._root = root
        self._work = work
        self._extra = list(extra)
        self.agents: list[Agent] = []
        self.sidecars: list[SidecarProcess] = []
        self.runs = [0] * count

    def start(self) -> Fleet:
        """Start every agent; return once they are connected (sidecars: start_sidecars)."""
        try:
            for host in self.hosts:
                self.directory(host).mkdir(parents=True, exist_ok=True)
                self.agents.append(Agent(host, self._connect, self.directory(host) / "agent.log"))
            for agent in self.agents:
                agent.answer()
        except BaseException:
            self.close()
            raise
        return self

    def start_sidecars(self) -> None:
        """Start every host's sidecar (wait_ready: until they have read the registry)."""
        self.sidecars = [self._sidecar(host) for host in self.hosts]

    def directory(self, host: Host) -> Path:
        """Where a host's logs, state file and static mapping are."""
        return self._work / host.name

    def _sidecar(self, host: Host) -> SidecarProcess:
        self.runs[host.index] += 1
        mapping = mapping_file(self.directory(host) / "ports.toml", CONTAINER_ADDRESS, PORTS)
        args = [
            *("--zookeeper", self._connect, "--root", self._root),
            *("--services-root", f"{self._root}-services", "--docker-url", "none"),
            *("--static-file", str(mapping), "--probe-seconds", "0", "--listen", ""),
            *("--advertise-host", host.address),
            *("--state-file", str(self.directory(host) / "state.json")),
            *("--log-level", os.environ.get("BENCH_LOG_LEVEL", "info")),
            *self._extra,
        ]
        log = self.directory(host) / f"sidecar-{self.runs[host.index]}.log"
        return SidecarProcess(log, args, prefix=Hosts.command(host, [])).start()

    def restart(self, index: int) -> None:
        """Start host ``index``'s sidecar again (its previous process must have ended)."""
        self.sidecars[index] = self._sidecar(self.hosts[index])

    def wait_ready(self, timeout: float) -> None:
        """Until every sidecar has finished its first full resync."""

        def ready() -> bool:
            check_stopping()
            return all(_full_resyncs(s) >= 1 for s in self.sidecars)

        wait_until(ready, timeout, interval=0.5, message="sidecars not ready")

    def create(self, names: dict[int, list[str]], provider: str = "p0") -> dict[str, float]:
        """Per host index, node paths its provider registers, all hosts at once; when each
        create was sent."""
        for index, paths in names.items():
            self.agents[index].send({"create": paths, "provider": provider})
        sent: dict[str, float] = {}
        for index, paths in names.items():
            sent.update(zip(paths, self.agents[index].answer()["sent"], strict=True))
        return sent

    def end_provider(self, index: int, provider: str) -> None:
        self.agents[index].send({"end": provider})
        self.agents[index].answer()

    def cpu_seconds(self) -> list[float]:
        """Each running sidecar's CPU time so far."""
        return [process_cpu(s.pid) for s in self.sidecars if s.running]

    def rss_mb(self) -> list[float]:
        return [process_status(s.pid, "VmRSS") / 1024 for s in self.sidecars if s.running]

    def sessions(self) -> set[int]:
        """Every running sidecar's session, as it last logged it."""
        return {
            int(connected[-1]["session"], 16)
            for s in self.sidecars
            if s.running and (connected := s.events("zookeeper_connected"))
        }

    def expiries(self) -> int:
        """Sessions the sidecars logged as lost (expired) so far."""
        return sum(len(s.events("zookeeper_lost")) for s in self.sidecars)

    def full_resyncs(self) -> int:
        """Full resyncs the sidecars logged so far."""
        return sum(_full_resyncs(s) for s in self.sidecars)

    def drops(self) -> int:
        """Connection losses the sidecars logged so far."""
        return sum(len(s.events("zookeeper_suspended")) for s in self.sidecars)

    def close(self) -> None:
        """Sidecars stopped with SIGTERM, agents closed; whatever hangs is killed."""
        for sidecar in self.sidecars:
            if sidecar.running:
                os.kill(sidecar.pid, signal.SIGTERM)
        for sidecar in self.sidecars:
            if sidecar.running:
                try:
                    sidecar.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    sidecar.kill()
        for agent in self.agents:
            agent.close()
        self.sidecars, self.agents = [], []

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _full_resyncs(sidecar: SidecarProcess) -> int:
    if not sidecar.running:
        raise RuntimeError(f"sidecar exited; log:\n{sidecar.log_tail()}")
    return sum(1 for e in sidecar.events("resync_done") if e.get("kind") == "full")
