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
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import docker.errors
import pytest
from kazoo.client import KazooClient

from testbed.dubbo_url import java_url_encode
from testbed.engine import private_engine
from testbed.ensemble import ZooKeeperEnsemble
from testbed.images import output_lines
from testbed.polling import wait_until
from testbed.sessions import client_from, expire_session
from tests.chaos.lab import (
    INTERFACES,
    OPERATIONS,
    RESTORE_WINDOW,
    SEED,
    SETTLE_DEADLINE,
    SLOTS,
    ConsumerView,
    Lab,
    Slot,
)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900)]


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
