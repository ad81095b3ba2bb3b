"""bench/run --fleet-chaos: sidecars killed and restarted during a storm; the invariant after.

HOSTS stand-in hosts, each with PROVIDERS providers (one ZooKeeper session each) that keep
registering interfaces of their container (the same address on every host) while, between
waves, a seeded random fault strikes: a sidecar killed (SIGKILL) or stopped (SIGTERM) and
started again 0-15 s later (before or after its 10 s session timeout), or a provider's
session expiring and the provider registering everything again in a new session, as Dubbo
does. Then every sidecar runs again and, within a deadline, every provider's registration
must be registered exactly once, at its own host's advertised address (not another host's:
all containers share one address), and the registry's other registrations be as they were.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kazoo.client import KazooClient  # type: ignore[import-untyped,unused-ignore]

from bench.fleet import ROOT, background_name, registry
from bench.fleet_lab import CONTAINER_ADDRESS, Fleet, node_name, rewritten_for
from bench.workload import FIRST_PORT, check_stopping, client
from sidecar import urls
from testbed.hosts import Hosts
from testbed.polling import wait_until

HOSTS = 10
PROVIDERS = 3
INTERFACES = 200
WAVES = 40
PER_WAVE = 3  # registrations each host's provider adds per wave
SETTLE_DEADLINE = 90.0
SEED = int(os.environ.get("FLEET_CHAOS_SEED", "20261201"))
# Short timeouts, as in the chaos soak: a dead sidecar's session ends (and a provider's stale
# rewrite is found by the periodic resync) within seconds. The fleet index routes the work:
# a killed sidecar may be the indexer.
SIDECAR_ARGS = ("--session-timeout", "10", "--resync-seconds", "5", "--fleet")


@dataclass
class Chaos:
    fleet: Fleet
    rng: random.Random
    # Per (host, provider): its registrations (paths of the originals), one per interface (a
    # provider registering a service again on its endpoint re-exports it: the later wins).
    registered: dict[tuple[int, str], list[str]] = field(default_factory=dict)
    restarts: list[tuple[float, int]] = field(default_factory=list)  # (due, host)
    counts: Counter[str] = field(default_factory=Counter)

    def wave(self, number: int) -> None:
        """Each host's next provider registers PER_WAVE more interfaces."""
        names: dict[int, list[str]] = {}
        provider = f"p{number % PROVIDERS}"
        for host in self.fleet.hosts:
            registered = self.registered.setdefault((host.index, provider), [])
            used = {path.split("/")[2] for path in registered}
            fresh = self.rng.sample(
                [i for i in range(INTERFACES) if f"svc{i}" not in used], PER_WAVE
            )
            paths = [self._registration(host.index, provider, i) for i in fresh]
            registered.extend(paths)
            names[host.index] = paths
        self.fleet.create(names, provider)

    def _registration(self, index: int, provider: str, interface: int) -> str:
        port = FIRST_PORT + int(provider[1:])
        application = f"{self.fleet.hosts[index].name}-{provider}"
        name = node_name(CONTAINER_ADDRESS, port, f"svc{interface}", application)
        return f"{ROOT}/svc{interface}/providers/{name}"

    def fault(self) -> None:
        """One seeded fault, or a due restart."""
        operations: list[tuple[str, Callable[[], bool]]] = [
            ("sidecar killed", lambda: self._stop(signal.SIGKILL)),
            ("sidecar stopped", lambda: self._stop(signal.SIGTERM)),
            ("provider session expired", self._expire_provider),
        ]
        name, operation = self.rng.choices(operations, [4, 2, 3])[0]
        if operation():
            self.counts[name] += 1
        self.restart_due(time.monotonic())

    def _stop(self, sig: signal.Signals) -> bool:
        running = [i for i, s in enumerate(self.fleet.sidecars) if s.running]
        if not running:
            return False
        index = self.rng.choice(running)
        os.kill(self.fleet.sidecars[index].pid, sig)
        self.fleet.sidecars[index].wait(timeout=15)
        # What the next run will start from: evidence when a registration is lost.
        where = self.fleet.directory(self.fleet.hosts[index])
        with contextlib.suppress(FileNotFoundError):
            shutil.copy(where / "state.json", where / f"state-{self.fleet.runs[index]}.json")
        self.restarts.append((time.monotonic() + self.rng.uniform(0, 15), index))
        return True

    def _expire_provider(self) -> bool:
        """The provider's session ends; it registers everything again in a new one."""
        if not self.registered:
            return False
        key = self.rng.choice(sorted(self.registered))
        self.fleet.end_provider(*key)
        self.fleet.create({key[0]: self.registered[key]}, key[1])
        return True

    def restart_due(self, now: float) -> None:
        for due, index in sorted(self.restarts):
            if due <= now:
                self.fleet.restart(index)
                self.restarts.remove((due, index))
                self.counts["sidecar started again"] += 1

    def violations(self, observer: KazooClient) -> list[str]:
        """Per interface: the background registrations as they were, plus exactly the
        rewrite of every provider's registration at its host's address."""
        wanted: dict[str, set[str]] = {}
        for (index, _), paths in self.registered.items():
            for path in paths:
                parent, _, name = path.rpartition("/")
                wanted.setdefault(parent, set()).add(rewritten_for(self.fleet.hosts[index], name))
        problems = []
        for i in range(INTERFACES):
            parent = f"{ROOT}/svc{i}/providers"
            background = {
                background_name(j, INTERFACES) for j in range(i, INTERFACES * 5, INTERFACES)
            }
            present = set(observer.get_children(parent))
            expected = wanted.get(parent, set()) | background
            problems += [f"missing {_shown(n)} under {parent}" for n in expected - present]
            problems += [f"unexpected {_shown(n)} under {parent}" for n in present - expected]
        return problems


def _shown(name: str) -> str:
    """A registration as endpoint and application (the node name is long)."""
    try:
        url = urls.parse(name)
    except ValueError:
        return name[:100]
    return f"{url.endpoint} of {dict(url.parameters).get('application', '?')}"


def run(work: Path) -> int:
    """The chaos run; 0 if the invariant held in time, 1 (and the violations) if not, in
    which case the sidecars' logs are kept in a directory it names."""
    rng = random.Random(SEED)
    with Hosts() as hosts, registry(work, hosts, INTERFACES) as zk:
        observer = client(zk.connect_string)
        fleet = Fleet(hosts, zk.connect_string, HOSTS, ROOT, work / "chaos", SIDECAR_ARGS)
        try:
            with fleet:
                fleet.start_sidecars()
                fleet.wait_ready(timeout=300)
                chaos = Chaos(fleet, rng)
                for number in range(WAVES):
                    check_stopping()
                    chaos.wave(number)
                    chaos.fault()
                    time.sleep(rng.uniform(0.1, 1.0))  # pacing the storm, not synchronising
                chaos.restart_due(float("inf"))
                failed = settle(chaos, observer)
        finally:
            observer.stop()
            observer.close()
    if failed:
        kept = Path(tempfile.mkdtemp(prefix="fleet-chaos-"))
        shutil.copytree(work / "chaos", kept, dirs_exist_ok=True)
        print(f"sidecar and agent logs: {kept}/host-N/")
    return failed


def settle(chaos: Chaos, observer: KazooClient) -> int:
    started = time.monotonic()
    problems: list[str] = []

    def holds() -> bool:
        check_stopping()
        problems[:] = chaos.violations(observer)
        return not problems

    with contextlib.suppress(TimeoutError):
        wait_until(holds, SETTLE_DEADLINE, interval=0.5)
    registered = sum(len(paths) for paths in chaos.registered.values())
    print(f"fleet chaos, seed {SEED}: {HOSTS} hosts, {registered} registrations")
    for name, count in sorted(chaos.counts.items()):
        print(f"  {count:4d}  {name}")
    if problems:
        print(f"invariant violated after {SETTLE_DEADLINE:.0f} s ({len(problems)} problems):")
        print("\n".join(f"  {p}" for p in problems[:20]))
        return 1
    print(f"invariant holds: converged {time.monotonic() - started:.1f} s after the last fault")
    sys.stdout.flush()
    return 0
