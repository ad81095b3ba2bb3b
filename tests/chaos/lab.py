"""The chaos soak's lab: provider slots on a private Docker engine, a ZooKeeper ensemble, the
sidecar under test, and a consumer's view of every providers path."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from docker.models.containers import Container
from kazoo.client import KazooClient
from kazoo.recipe.watchers import ChildrenWatch

from sidecar import urls
from sidecar.model import Endpoint
from testbed import provider as provider_script
from testbed.engine import DockerEngine
from testbed.ensemble import ZooKeeperEnsemble
from testbed.images import output_lines, run_python, wait_for_line
from testbed.networks import published_port
from testbed.sidecar_process import SidecarProcess

OPERATIONS = int(os.environ.get("CHAOS_OPERATIONS", "200"))
SEED = int(os.environ.get("CHAOS_SEED", "20261128"))
SLOTS = 4
ROOT = "/chaos"
INTERFACES = ["com.example.OrderService", "com.example.StockService"]
SETTLE_DEADLINE = 30.0
# Replace mode's one documented window: after the sidecar's own session ended, its rewrites
# are back this soon after the new sidecar connected.
RESTORE_WINDOW = 2.0


@dataclass
class Slot:
    """One provider position: a container (or none), its interface, its registrations."""

    interface: str
    container: Container | None = None
    registrations_seen: int = 0


@dataclass
class Lab:
    ensemble: ZooKeeperEnsemble
    engine: DockerEngine
    work: Path
    slots: list[Slot]
    observer: KazooClient
    untouchable: dict[str, object] = field(default_factory=dict)
    sidecar: SidecarProcess | None = None
    sidecar_runs: int = 0
    seen: ConsumerView | None = None
    restarted: Slot | None = None  # the slot the last operation restarted

    def providers(self, interface: str) -> str:
        return f"{ROOT}/{interface}/providers"

    # -- the system under test --------------------------------------------------------------

    def start_sidecar(self) -> None:
        self.sidecar_runs += 1
        self.sidecar = SidecarProcess(
            self.work / f"sidecar-{self.sidecar_runs}.log",
            [
                *("--zookeeper", self.ensemble.connect_string, "--root", ROOT),
                *("--docker-url", self.engine.url, "--advertise-host", "127.0.0.1"),
                *("--session-timeout", "10", "--resync-seconds", "5", "--probe-seconds", "1"),
                *("--state-file", str(self.work / "state.json"), "--log-level", "debug"),
                *("--listen", "127.0.0.1:0"),
            ],
        ).start()
        self.sidecar.wait_for_event("resync_done", timeout=60)

    # -- providers ----------------------------------------------------------------------------

    def start_provider(self, slot: Slot) -> None:
        gateway = self.engine.bridge_gateway()
        connect = ",".join(f"{gateway}:{s.port}" for s in self.ensemble.servers)
        slot.container = run_python(
            self.engine.client,
            Path(provider_script.__file__),
            [*("--zookeeper", connect, "--root", ROOT, "--interface", slot.interface),
             *("--session-timeout", "4", "--application", f"app-{uuid.uuid4().hex[:6]}")],
            name_prefix="chaos-provider",
        )  # fmt: skip
        slot.registrations_seen = 1
        wait_for_line(slot.container, "registered ", timeout=60)

    def application(self, slot: Slot) -> str:
        assert slot.container is not None
        registered = output_lines(slot.container, "registered ")
        return dict(urls.parse(registered[-1].rsplit("/", 1)[1]).parameters)["application"]

    def await_new_registration(self, slot: Slot) -> None:
        assert slot.container is not None
        slot.registrations_seen += 1
        wait_for_line(slot.container, "registered ", timeout=60, count=slot.registrations_seen)

    def expected(self) -> dict[str, set[str]]:
        """Per providers path, the rewritten name of each live provider's registration."""
        wanted: dict[str, set[str]] = {self.providers(i): set() for i in INTERFACES}
        for slot in self.slots:
            if slot.container is None:
                continue
            slot.container.reload()
            if slot.container.status != "running":
                continue
            registered = output_lines(slot.container, "registered ")
            original = registered[-1].rsplit("/", 1)[1]
            port = published_port(slot.container, "20880/tcp")
            rewritten = urls.parse(original).with_endpoint(Endpoint("127.0.0.1", port))
            wanted[self.providers(slot.interface)].add(rewritten)
        return wanted

    # -- the invariant ------------------------------------------------------------------------

    def violations(self) -> list[str]:
        problems = []
        expected = self.expected()
        for path, names in expected.items():
            present = set(self.observer.get_children(path)) if self.observer.exists(path) else set()
            untouchable = {p.rsplit("/", 1)[1] for p in self.untouchable if p.startswith(path)}
            for missing in names - present:
                problems.append(f"missing {missing[:60]}… under {path}")
            for extra in present - names - untouchable:
                problems.append(f"stale {urls.parse(extra).endpoint} under {path}")
            for name in names & present:
                url = urls.parse(name)
                application = dict(url.parameters)["application"]
                if not answers(url.endpoint, application):
                    problems.append(f"{url.endpoint} does not answer as {application}")
        for path, stat in self.untouchable.items():
            now = self.observer.exists(path)
            if now is None or (now.czxid, now.mzxid) != stat:
                problems.append(f"foreign node {path} changed")
        return problems


class ConsumerView:
    """What a consumer watching every providers path saw, and when: the applications
    registered under each path after each change."""

    def __init__(self, client: KazooClient, paths: list[str]) -> None:
        self._lock = threading.Lock()
        self.history: dict[str, list[tuple[float, frozenset[str]]]] = {p: [] for p in paths}
        for path in paths:
            client.ensure_path(path)
            ChildrenWatch(client, path, lambda names, path=path: self._changed(path, names))

    def _changed(self, path: str, names: list[str]) -> None:
        applications = set()
        for name in names:
            try:
                applications.add(dict(urls.parse(name).parameters).get("application", ""))
            except urls.MalformedName:
                continue
        with self._lock:
            self.history[path].append((time.time(), frozenset(applications)))

    def longest_gap(self, path: str, application: str, since: float, until: float) -> float:
        """The longest time within [since, until] the application was missing under path."""
        with self._lock:
            history = list(self.history[path])
        longest, missing_since = 0.0, None
        for at, present in history:
            at = max(at, since)
            if at > until:
                break
            if application in present and missing_since is not None:
                longest = max(longest, at - missing_since)
                missing_since = None
            elif application not in present and missing_since is None:
                missing_since = at
        if missing_since is not None:
            longest = max(longest, until - missing_since)
        return longest


def answers(endpoint: Endpoint, application: str) -> bool:
    """Whether the endpoint is reached and it is that application's provider answering."""
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=2) as conn:
            conn.sendall(b"ping\n")
            return conn.makefile("rb").readline().startswith(f"pong {application} ".encode())
    except OSError:
        return False
