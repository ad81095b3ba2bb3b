"""Deployment scope: per-app sidecars beside their apps and a per-host one, on one engine."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from docker.models.containers import Container
from kazoo.client import KazooClient

from testbed.consumer import ProvidersWatch
from testbed.engine import DockerEngine
from testbed.images import container_output
from testbed.networks import published_port
from testbed.polling import wait_until
from testbed.sessions import expire_session
from testbed.sidecar_process import SidecarProcess
from testbed.zookeeper import ZooKeeperServer

from .helpers import children, one_shot, owner, pong, removed_at_end, rewritten_name, sidecar_beside

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
DECISIONS = ("rewrite", "update", "restore", "remove", "drop-original")


def log_lines(container: Container) -> list[dict[str, Any]]:
    found = []
    for line in container_output(container).splitlines():
        with contextlib.suppress(ValueError):
            found.append(json.loads(line))
    return found


def session_of(container: Container) -> int:
    def connected() -> int | None:
        for line in log_lines(container):
            if line.get("event") == "zookeeper_connected":
                return int(line["session"], 16)
        return None

    return wait_until(connected, 30, message=f"{container.name} never connected")


@pytest.fixture
def app_sidecar(
    engine: DockerEngine, zookeeper: ZooKeeperServer, root: str, run_id: str
) -> Iterator[Callable[..., Container]]:
    """The sidecar in a container sharing ``app``'s network namespace (as compose's
    ``network_mode: service:app`` does), with the Docker socket, and nothing saying which
    container it serves."""
    socket_path = engine.url.removeprefix("unix://")

    def start(app: Container, *extra: str) -> Container:
        container = sidecar_beside(
            engine, app,
            ["--zookeeper", f"{engine.bridge_gateway()}:{zookeeper.port}", "--root", root,
             "--docker-url", f"unix://{socket_path}", "--log-format", "json",
             "--state-file", "", "--listen", "", "--session-timeout", "10", *extra],
            run_id, volumes={socket_path: socket_path},
        )  # fmt: skip
        started.append(container)
        return container

    with removed_at_end() as started:
        yield start


def test_per_app_sidecars_manage_only_their_app_and_one_stopping_spares_the_other(
    providers: str,
    registry: KazooClient,
    start_provider: Callable[..., Container],
    app_sidecar: Callable[..., Container],
) -> None:
    """Two apps on one engine, each with a sidecar in its network namespace that detects its
    app: each rewrites only its own app. Stopping one sidecar, even closing its session (its
    app's rewrite goes with it), leaves the other app registered with no gap, reachable."""
    shop, stock = start_provider(), start_provider()
    shop_sidecar = app_sidecar(shop, "--close-session-on-exit")
    stock_sidecar = app_sidecar(stock)
    both = sorted([rewritten_name(shop), rewritten_name(stock)])
    wait_until(lambda: children(registry, providers) == both, 15, message="not both rewritten")
    stock_path = f"{providers}/{rewritten_name(stock)}"
    assert owner(registry, stock_path) == session_of(stock_sidecar)
    assert owner(registry, f"{providers}/{rewritten_name(shop)}") == session_of(shop_sidecar)
    watch = ProvidersWatch(registry, providers)
    before = registry.get(stock_path)[1]

    shop_sidecar.stop(timeout=10)
    wait_until(lambda: children(registry, providers) == [rewritten_name(stock)], 10,
               message="the stopped sidecar's rewrite did not go with its session")  # fmt: skip
    assert registry.get(stock_path)[1] == before
    assert all(rewritten_name(stock) in seen for seen in watch.lists())
    assert pong("127.0.0.1", published_port(stock)).startswith("pong ")
    for running, app in ((shop_sidecar, shop), (stock_sidecar, stock)):
        lines = log_lines(running)
        [scope] = [line for line in lines if line.get("event") == "scope_chosen"]
        assert scope["scope"] == f"per-app sidecar of {app.name}"
        assert {line["container"] for line in lines if line.get("event") in DECISIONS} == {app.name}


def test_a_per_app_sidecar_takes_its_app_over_from_the_per_host_one_without_a_gap(
    zookeeper: ZooKeeperServer,
    engine: DockerEngine,
    root: str,
    providers: str,
    registry: KazooClient,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """A per-host sidecar manages two apps; a per-app sidecar started for one of them
    (--container) takes that app's rewrite over into its own session in one transaction,
    the per-host one lets go of it without a fight and keeps the other app. `status`, run
    anywhere on the host, says which sidecar and which address source decided each."""
    shop, stock = start_provider(), start_provider()
    host = start_sidecar()
    both = sorted([rewritten_name(shop), rewritten_name(stock)])
    wait_until(lambda: children(registry, providers) == both, 5, message="not both rewritten")
    watch = ProvidersWatch(registry, providers)
    shop_path = f"{providers}/{rewritten_name(shop)}"

    app = start_sidecar("--container", shop.name, "--advertise-from", "env:PUBLIC_IP",
                        advertise_host=None, env={"PUBLIC_IP": "127.0.0.1"})  # fmt: skip
    wait_until(lambda: owner(registry, shop_path) == app.session, 15,
               message="the per-app sidecar did not take its app over")  # fmt: skip
    assert owner(registry, f"{providers}/{rewritten_name(stock)}") == host.session
    assert all(seen == both for seen in watch.lists())
    [taken] = app.logged("update")
    assert taken["reason"] == f"taking over from the per-host sidecar (session 0x{host.session:x})"
    claimed = f"managed by the per-app sidecar of {shop.name} (session 0x{app.session:x})"
    wait_until(lambda: any(e["reason"] == claimed for e in host.events("left_alone")), 5,
               message="the per-host sidecar did not report the claim")  # fmt: skip
    assert [e for e in host.events() if e["event"] in DECISIONS and e["container"] == shop.name
            and e["timestamp"] > taken["timestamp"]] == []  # fmt: skip
    assert app.events("scope_chosen")[0]["scope"] == f"per-app sidecar of {shop.name}"

    done = one_shot("status", zookeeper.connect_string, root, engine.url)
    assert done.returncode == 0, done.stderr
    rows = {row.split()[3]: " ".join(row.split()) for row in done.stdout.splitlines()[1:]}
    assert rows[shop.short_id].endswith(
        f"per-app sidecar of {shop.name}, address from env:PUBLIC_IP the per-app sidecar of "
        f"{shop.name} (session 0x{app.session:x})"
    )
    assert rows[stock.short_id].endswith(
        f"per-host, address from --advertise-host the per-host sidecar (session 0x{host.session:x})"
    )


def test_the_per_host_sidecar_adopts_the_app_of_a_per_app_sidecar_gone_for_good(
    zookeeper: ZooKeeperServer,
    providers: str,
    registry: KazooClient,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
    tmp_path: Path,
) -> None:
    """A per-app sidecar is killed and its session ends (it does not come back within its
    timeout): its app's registration vanished with that session, and the per-host sidecar of
    the engine restores it from the records within 2 s, in its own session."""
    shop = start_provider()
    host = start_sidecar()
    app = start_sidecar("--container", shop.name)
    shop_path = f"{providers}/{rewritten_name(shop)}"
    wait_until(lambda: registry.exists(shop_path) and owner(registry, shop_path) == app.session,
               15, message="the per-app sidecar did not take its app over")  # fmt: skip
    state = json.loads((tmp_path / "state-1.json").read_text())
    app.kill()
    expire_session(zookeeper.connect_string, int(state["session_id"]),
                   bytes.fromhex(state["password"]))  # fmt: skip
    gone = time.monotonic()
    wait_until(lambda: registry.exists(shop_path) and owner(registry, shop_path) == host.session,
               10, message="the per-host sidecar did not adopt the app")  # fmt: skip
    assert time.monotonic() - gone < 2.0
    [restored] = host.logged("restore")
    assert restored["container"] == shop.name
