"""Chaos soak: a seeded random sequence of faults on real servers, the invariant after each.

Operations: provider containers started, stopped, restarted and killed; provider sessions
expired; the sidecar killed and restarted (within its session timeout, resuming it; or
SIGKILLed and restarted only once its session is gone); ZooKeeper servers killed and
restarted; the Docker daemon restarted. After each operation, once things settle: every live
provider is registered exactly once, at an address that reaches it; nothing stale remains;
nothing foreign changed. Throughout, a consumer's view (a children watch on every providers
path) is recorded: a provider that stays live is never missing from it, except after the
sidecar's own session ended, and then for at most 2 s once the new sidecar is connected.
"""

from __future__ import annotations

import json
import os
import random
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import docker.errors
import pytest
from docker.models.containers import Container
from kazoo.client import KazooClient
from kazoo.recipe.watchers import ChildrenWatch

from sidecar import urls
from sidecar.model import Endpoint
from testbed import provider as provider_script
from testbed.dubbo_url import java_url_encode
from testbed.engine import DockerEngine, private_engine
from testbed.ensemble import ZooKeeperEnsemble
from testbed.images import output_lines, run_python, wait_for_line
from testbed.networks import published_port
from testbed.polling import wait_until
from testbed.sessions import client_from, expire_session
from testbed.sidecar_process import SidecarProcess

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900)]

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


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    work = Path("/tmp") / f"chaos-{uuid.uuid4().hex[:8]}"
    with (
        ZooKeeperEnsemble(tmp_path / "ensemble", size=3, bind="0.0.0.0") as ensemble,
        private_engine(work / "engine", subnet_index=214) as engine,
    ):
        observer = KazooClient(hosts=ensemble.connect_string, timeout=15.0)
        observer.start(timeout=30)
        slots = [Slot(INTERFACES[i % len(INTERFACES)]) for i in range(SLOTS)]
        lab = Lab(ensemble, engine, tmp_path, slots, observer)
        lab.seen = ConsumerView(observer, [lab.providers(i) for i in INTERFACES])
        try:
            yield lab
        finally:
            if lab.sidecar is not None and lab.sidecar.running:
                lab.sidecar.kill()
            observer.stop()
            observer.close()


def test_chaos_soak(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    """A seeded random sequence of at least 200 faults; after each, the invariant holds
    within the settle deadline. Prints the operation counts and the worst convergence."""
    rng = random.Random(SEED)
    other_host = plant_untouchables(lab)
    for slot in lab.slots[:2]:
        lab.start_provider(slot)
    lab.start_sidecar()

    operations: list[tuple[str, Callable[[], bool]]] = [
        ("container start", lambda: start(lab, rng)),
        ("container stop", lambda: stop(lab, rng, kill=False)),
        ("container kill", lambda: stop(lab, rng, kill=True)),
        ("container restart", lambda: restart(lab, rng)),
        ("provider session expiry", lambda: expire(lab, rng)),
        ("sidecar kill and restart", lambda: bounce_sidecar(lab)),
        ("sidecar SIGKILL, restart past its session", lambda: crash_sidecar(lab)),
        ("zookeeper server kill", lambda: kill_server(lab, rng)),
        ("zookeeper server restart", lambda: restart_server(lab)),
        ("docker daemon restart", lambda: restart_docker(lab)),
    ]
    weights = [6, 3, 3, 3, 4, 1, 1.5, 1, 1, 0.3]
    counts: Counter[str] = Counter()
    worst = (0.0, "")
    worst_gap = (0.0, "")
    problems: list[str] = []

    def settled() -> bool:
        problems[:] = lab.violations()
        return not problems

    try:
        while (applied := sum(counts.values())) < OPERATIONS:
            index = rng.choices(range(len(operations)), weights)[0]
            if applied == OPERATIONS // 2 and not counts["docker daemon restart"]:
                index = len(operations) - 1  # at least one Docker daemon restart
            name, operation = operations[index]
            live = {id(s): lab.application(s) for s in running(lab)}
            lab.restarted = None
            began = time.time()
            if not operation():
                continue
            counts[name] += 1
            done = time.monotonic()
            try:
                wait_until(settled, SETTLE_DEADLINE)
            except TimeoutError:
                tail = lab.sidecar.log_tail(15) if lab.sidecar else ""
                pytest.fail(f"operation {applied} ({name}): {problems} after {SETTLE_DEADLINE} s"
                            f"\n{tail}")  # fmt: skip
            worst = max(worst, (time.monotonic() - done, name))
            gap = consumer_gap(lab, live, began, name)
            worst_gap = max(worst_gap, (gap, name))
    finally:
        other_host.stop()
        other_host.close()
        with capsys.disabled():
            print_summary(counts, worst, worst_gap)
    assert counts["docker daemon restart"] >= 1


def plant_untouchables(lab: Lab) -> KazooClient:
    """Registrations the sidecar must never touch: another host's replica (same container
    address space, session from 127.0.0.2) and a malformed name. Returns that host's client."""
    other_host = client_from(lab.ensemble.connect_string, "127.0.0.2", timeout=30)
    foreign = java_url_encode(f"dubbo://10.214.0.2:20880/{INTERFACES[0]}?side=provider")
    for name in (foreign, "not-a-url"):
        path = f"{lab.providers(INTERFACES[0])}/{name}"
        other_host.create(path, b"", ephemeral=True, makepath=True)
        stat = other_host.exists(path)
        lab.untouchable[path] = (stat.czxid, stat.mzxid)
    return other_host


def print_summary(
    counts: Counter[str], worst: tuple[float, str], worst_gap: tuple[float, str]
) -> None:
    """The operations applied and the worst convergence and consumer gap."""
    print(f"\nchaos soak, seed {SEED}: {sum(counts.values())} operations")
    for name, count in sorted(counts.items()):
        print(f"  {count:4d}  {name}")
    print(f"  worst time to converge: {worst[0]:.2f} s (after {worst[1]})")
    print(f"  worst gap a consumer saw for a live provider: {worst_gap[0]:.2f} s "
          f"(after {worst_gap[1] or 'none'})")  # fmt: skip


# -- operations: each returns False when it does not apply right now -----------------------------


def start(lab: Lab, rng: random.Random) -> bool:
    empty = [s for s in lab.slots if s.container is None]
    if not empty:
        return False
    lab.start_provider(rng.choice(empty))
    return True


def running(lab: Lab) -> list[Slot]:
    return [s for s in lab.slots if s.container is not None]


def stop(lab: Lab, rng: random.Random, kill: bool) -> bool:
    if not running(lab):
        return False
    slot = rng.choice(running(lab))
    assert slot.container is not None
    if kill:
        slot.container.kill()
    else:
        slot.container.stop(timeout=5)
    slot.container.remove(force=True)
    slot.container = None
    return True


def restart(lab: Lab, rng: random.Random) -> bool:
    if not running(lab):
        return False
    slot = rng.choice(running(lab))
    assert slot.container is not None
    slot.container.restart(timeout=5)
    lab.restarted = slot
    lab.await_new_registration(slot)
    return True


def expire(lab: Lab, rng: random.Random) -> bool:
    if not running(lab):
        return False
    slot = rng.choice(running(lab))
    assert slot.container is not None
    session, password = output_lines(slot.container, "session ")[-1].split()[1:]
    expire_session(lab.ensemble.connect_string, int(session, 16), bytes.fromhex(password))
    lab.await_new_registration(slot)
    return True


def consumer_gap(lab: Lab, live: dict[int, str], began: float, name: str) -> float:
    """The longest a provider live through the operation went missing from the consumer's
    view; fails the soak beyond the documented window."""
    assert lab.seen is not None
    now = time.time()
    allowed_until = began
    if name.startswith("sidecar SIGKILL") and lab.sidecar is not None:
        connected = lab.sidecar.events("zookeeper_connected")[-1]["timestamp"]
        allowed_until = datetime.fromisoformat(connected).timestamp() + RESTORE_WINDOW
    longest = 0.0
    for slot in running(lab):
        application = live.get(id(slot))
        if application is None or slot is lab.restarted:
            continue  # started, or restarted (down for a while), by this operation
        path = lab.providers(slot.interface)
        gap = lab.seen.longest_gap(path, application, began, now)
        late = lab.seen.longest_gap(path, application, allowed_until, now)
        if name.startswith("sidecar SIGKILL"):
            assert late == 0.0, f"{application} still missing {RESTORE_WINDOW} s after reconnect"
        else:
            assert gap == 0.0, f"{application} went missing for {gap:.2f} s during {name}"
        longest = max(longest, gap)
    return longest


def crash_sidecar(lab: Lab) -> bool:
    """SIGKILL, then a restart only after the session is gone (a crash loop, a slow
    reschedule): the rewrites come back from their records in ZooKeeper."""
    assert lab.sidecar is not None
    lab.sidecar.kill()
    state = json.loads((lab.work / "state.json").read_text())
    expire_session(
        lab.ensemble.connect_string, int(state["session_id"]), bytes.fromhex(state["password"])
    )
    lab.start_sidecar()
    return True


def bounce_sidecar(lab: Lab) -> bool:
    assert lab.sidecar is not None
    lab.sidecar.kill()
    lab.start_sidecar()
    return True


def kill_server(lab: Lab, rng: random.Random) -> bool:
    alive = [s for s in lab.ensemble.servers if s.running]
    if len(alive) < len(lab.ensemble.servers):
        return False  # keep a quorum: at most one server down at a time
    rng.choice(alive).kill()
    lab.ensemble.leader(timeout=30)
    return True


def restart_server(lab: Lab) -> bool:
    dead = [s for s in lab.ensemble.servers if not s.running]
    if not dead:
        return False
    dead[0].restart()
    return True


def restart_docker(lab: Lab) -> bool:
    lab.engine.restart()
    for slot in running(lab):
        assert slot.container is not None
        try:
            slot.container.reload()
        except docker.errors.NotFound:
            slot.container = None
    return True
