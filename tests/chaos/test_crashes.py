"""Crashes at any moment lose nothing: a seeded run SIGKILLs the sidecar at random points of a
storm of registrations, each time restarts it only after its session is gone (a crash loop, a
slow reschedule), and checks that every live provider is registered exactly once at an
address that answers. No Docker: a static mapping, so that only the sidecar's own restarts
are under test; the records in ZooKeeper are all that carries the rewrites over."""

from __future__ import annotations

import json
import os
import random
import selectors
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from sidecar import urls
from sidecar.model import Endpoint
from testbed.dubbo_url import java_url_encode
from testbed.polling import wait_until
from testbed.sessions import expire_session
from testbed.sidecar_process import SidecarProcess
from testbed.zookeeper import ZooKeeperServer

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]

KILLS = int(os.environ.get("CRASH_KILLS", "50"))
SEED = int(os.environ.get("CHAOS_SEED", "20261128"))
ROOT = "/crashes"
CONTAINER = "10.77.0.1"  # the providers' address as they register it (never dialled)
FIRST_PORT = 20880


class Listeners:
    """One thread answering ``ping`` with ``pong <application>`` on each published port."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def add(self, application: str) -> int:
        server = socket.create_server(("127.0.0.1", 0))
        server.setblocking(False)
        self._selector.register(server, selectors.EVENT_READ, application)
        return int(server.getsockname()[1])

    def _run(self) -> None:
        while not self._stopping:
            for key, _ in self._selector.select(timeout=0.2):
                assert isinstance(key.fileobj, socket.socket)
                try:
                    conn, _ = key.fileobj.accept()
                except BlockingIOError:
                    continue
                with conn:
                    conn.settimeout(2)
                    if conn.recv(16).startswith(b"ping"):
                        conn.sendall(f"pong {key.data}\n".encode())

    def close(self) -> None:
        self._stopping = True
        self._thread.join(5)
        for key in list(self._selector.get_map().values()):
            assert isinstance(key.fileobj, socket.socket)
            key.fileobj.close()
        self._selector.close()


@pytest.fixture
def zookeeper(tmp_path: Path) -> Iterator[ZooKeeperServer]:
    with ZooKeeperServer(tmp_path / "zookeeper") as server:
        yield server


def test_a_sidecar_killed_at_any_moment_loses_no_registration(
    zookeeper: ZooKeeperServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """At least 50 SIGKILLs at random points; after each restart (past the old session's
    end), every provider registered so far is there exactly once, rewritten, answering."""
    rng = random.Random(SEED)
    listeners = Listeners()
    providers = KazooClient(hosts=zookeeper.connect_string, timeout=30)
    observer = KazooClient(hosts=zookeeper.connect_string, timeout=30)
    providers.start(timeout=30)
    observer.start(timeout=30)
    mapping = tmp_path / "ports.toml"
    expected: dict[str, str] = {}  # providers path + original name -> rewritten name
    ports: list[tuple[int, int]] = []
    sidecar: SidecarProcess | None = None
    restored: list[float] = []
    pause = threading.Event()  # never set: waits of random length pick the crash moments
    try:
        for run in range(KILLS + 1):
            started = time.monotonic()
            sidecar = _start(zookeeper, tmp_path, mapping, run)
            if expected:  # restarted after its session ended: everything must come back
                try:
                    wait_until(lambda: not _violations(observer, expected), 15)
                except TimeoutError:
                    pytest.fail(f"after kill {run}: {_violations(observer, expected)[:10]}")
                restored.append(time.monotonic() - started)
            if run == KILLS:
                break
            for _ in range(rng.randint(1, 3)):  # the storm goes on until the crash
                _register(providers, listeners, mapping, ports, expected, rng)
                pause.wait(rng.uniform(0.0, 0.6))
            sidecar.kill()
            _expire_its_session(zookeeper, tmp_path)
    finally:
        if sidecar is not None and sidecar.running:
            sidecar.kill()
        for client in (providers, observer):
            client.stop()
            client.close()
        listeners.close()
    with capsys.disabled():
        restored.sort()
        print(f"\ncrashes, seed {SEED}: {len(restored)} SIGKILLs during a storm of "
              f"{len(expected)} registrations; process start -> all restored: "
              f"p50 {restored[len(restored) // 2]:.2f} s, worst {restored[-1]:.2f} s")  # fmt: skip
    assert len(restored) == KILLS


def _start(zookeeper: ZooKeeperServer, work: Path, mapping: Path, run: int) -> SidecarProcess:
    return SidecarProcess(
        work / f"sidecar-{run}.log",
        [
            *("--zookeeper", zookeeper.connect_string, "--root", ROOT),
            *("--docker-url", "none", "--static-file", str(mapping)),
            *("--advertise-host", "127.0.0.1", "--session-timeout", "2", "--probe-seconds", "0"),
            *("--state-file", str(work / "state.json"), "--listen", ""),
        ],
    ).start()


def _register(
    client: KazooClient,
    listeners: Listeners,
    mapping: Path,
    ports: list[tuple[int, int]],
    expected: dict[str, str],
    rng: random.Random,
) -> None:
    """One more provider: a published port answering, in the static mapping, registered."""
    application = f"app-{uuid.uuid4().hex[:6]}"
    container_port = FIRST_PORT + len(ports)
    host_port = listeners.add(application)
    ports.append((container_port, host_port))
    lines = [f"{c} = {h}" for c, h in ports]
    # Written whole, then renamed: this test is about SIGKILLs, and a reader that catches the
    # file half written sees a mapping without ports (a case this test does not cover).
    written = mapping.with_suffix(".new")
    written.write_text(f'addresses = ["{CONTAINER}"]\n[ports]\n' + "\n".join(lines) + "\n")
    written.replace(mapping)
    interface = f"com.example.S{rng.randrange(8)}"
    name = java_url_encode(
        f"dubbo://{CONTAINER}:{container_port}/{interface}?application={application}"
        f"&interface={interface}&side=provider&timestamp={time.time_ns()}"
    )
    path = f"{ROOT}/{interface}/providers"
    client.create(f"{path}/{name}", b"", ephemeral=True, makepath=True)
    rewritten = urls.parse(name).with_endpoint(Endpoint("127.0.0.1", host_port))
    expected[f"{path}/{name}"] = rewritten


def _expire_its_session(zookeeper: ZooKeeperServer, work: Path) -> None:
    """End the killed sidecar's session now, as its timeout would (if it got one)."""
    state = work / "state.json"
    try:
        doc = json.loads(state.read_text())
    except (OSError, ValueError):
        return  # killed before it had a session
    if doc.get("session_id"):
        session, password = int(doc["session_id"]), bytes.fromhex(doc["password"])
        expire_session(zookeeper.connect_string, session, password)


def _violations(observer: KazooClient, expected: dict[str, str]) -> list[str]:
    """Every provider once, rewritten, answering; no original left behind."""
    problems = []
    by_path: dict[str, set[str]] = {}
    for original, rewritten in expected.items():
        path = original.rpartition("/")[0]
        by_path.setdefault(path, set()).add(rewritten)
    for path, wanted in by_path.items():
        present = set(observer.get_children(path))
        problems += [f"missing {urls.parse(n).endpoint} in {path}" for n in wanted - present]
        problems += [f"extra {urls.parse(n).endpoint} in {path}" for n in present - wanted]
    for rewritten in {n for names in by_path.values() for n in names}:
        endpoint = urls.parse(rewritten).endpoint
        application = dict(urls.parse(rewritten).parameters)["application"]
        if not _answers(endpoint, application):
            problems.append(f"{endpoint} does not answer as {application}")
    return problems


def _answers(endpoint: Endpoint, application: str) -> bool:
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=2) as conn:
            conn.sendall(b"ping\n")
            return conn.makefile("rb").readline().startswith(f"pong {application}".encode())
    except OSError:
        return False
