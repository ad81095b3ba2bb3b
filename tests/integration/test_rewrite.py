"""End to end on a real ZooKeeper and a real Docker Engine: a provider in a container becomes
reachable for a consumer that cannot reach container addresses, and disappears when it stops."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest
from docker.models.containers import Container
from kazoo.client import KazooClient

from sidecar import urls
from sidecar.model import Endpoint
from sidecar.ownership import read_marker
from testbed.consumer import ProvidersWatch, run_as_group
from testbed.dubbo_url import java_url_encode
from testbed.engine import DockerEngine
from testbed.firewall import unreachable_for_group
from testbed.networks import container_ip, published_port
from testbed.polling import wait_until
from testbed.sidecar_process import SidecarProcess
from testbed.zookeeper import ZooKeeperServer

from .conftest import INTERFACE
from .helpers import children, one_shot, original_name, rewritten_name

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def consume_as_remote_host(
    engine: DockerEngine, zookeeper: ZooKeeperServer, root: str
) -> tuple[int, list[dict[str, object]]]:
    """Call every registered provider from a process that cannot reach container addresses."""
    args = ["--zookeeper", zookeeper.connect_string, "--root", root, "--interface", INTERFACE]
    with unreachable_for_group([engine.bridge_subnet()]) as gid:
        return run_as_group(gid, args)


def test_consumer_reaches_provider_through_rewritten_registration(
    engine: DockerEngine,
    zookeeper: ZooKeeperServer,
    root: str,
    providers: str,
    registry: KazooClient,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """The provider's container address is replaced by 127.0.0.1:<published port>; a consumer
    that cannot route to containers completes a request/response through it."""
    provider = start_provider()
    original = original_name(provider)
    sidecar = start_sidecar()

    rewritten = rewritten_name(provider)
    wait_until(lambda: children(registry, providers) == [rewritten], 5,
               message="registration was not rewritten")  # fmt: skip
    start, end = urls.parse(original).host_port_span
    assert rewritten[:start] == original[:start]
    assert rewritten.endswith(original[end:])

    data, stat = registry.get(f"{providers}/{rewritten}")
    marker = read_marker(data)
    assert marker is not None
    assert marker.original == original
    assert marker.container_endpoint == Endpoint(container_ip(provider), 20880)
    assert marker.container == provider.id
    assert stat.ephemeralOwner not in (0, None)

    code, calls = consume_as_remote_host(engine, zookeeper, root)
    assert code == 0, calls
    [call] = calls
    assert call["address"] == f"127.0.0.1:{published_port(provider, '20880/tcp')}"
    assert call["reply"] == f"pong demo-provider {container_ip(provider)}:20880"
    [line] = sidecar.logged("rewrite")
    assert line["interface"] == INTERFACE
    assert line["original"] == f"{container_ip(provider)}:20880"
    assert line["rewritten"] == call["address"]
    assert line["container"] == provider.name


def test_without_the_sidecar_the_same_consumer_fails(
    engine: DockerEngine,
    zookeeper: ZooKeeperServer,
    root: str,
    start_provider: Callable[..., Container],
) -> None:
    """Control: with no sidecar the consumer gets the container address and cannot reach it,
    so the test above can only pass because of the rewrite."""
    provider = start_provider()
    code, calls = consume_as_remote_host(engine, zookeeper, root)
    assert code == 1
    [call] = calls
    assert call["address"] == f"{container_ip(provider)}:20880"
    assert call["ok"] is False


@pytest.mark.parametrize("how", ["stop", "kill", "remove", "pause"])
def test_rewrite_disappears_within_one_second_when_the_container_goes(
    how: str,
    providers: str,
    registry: KazooClient,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """Stopping, killing, removing or pausing the provider container removes its rewritten
    registration within 1 s, although the provider's own node is long gone."""
    provider = start_provider()
    sidecar = start_sidecar()
    wait_until(lambda: children(registry, providers) == [rewritten_name(provider)], 5,
               message="registration was not rewritten")  # fmt: skip

    if how == "stop":
        provider.stop(timeout=10)
    elif how == "kill":
        provider.kill()
    elif how == "pause":
        provider.pause()
    else:
        provider.remove(force=True)
    gone_at = time.monotonic()
    wait_until(lambda: children(registry, providers) == [], 5, message="rewrite not removed")
    assert time.monotonic() - gone_at < 1.0
    [line] = sidecar.logged("remove")
    assert ("is paused" if how == "pause" else "no longer running") in line["reason"]


def test_provider_started_after_the_sidecar_is_rewritten_within_one_second(
    providers: str,
    registry: KazooClient,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """A container that starts while the sidecar runs is picked up within 1 s of registering,
    as a watching consumer sees it."""
    start_sidecar()
    watch = ProvidersWatch(registry, providers)
    provider = start_provider()
    wanted = rewritten_name(provider)
    wait_until(lambda: watch.lists()[1:][-1:] == [[wanted]], 5, message="not rewritten")
    assert watch.seconds_until([wanted]) < 1.0


def test_restarted_sidecar_takes_over_without_duplicates(
    providers: str,
    registry: KazooClient,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """A sidecar killed and restarted finds its earlier rewrites, takes them over into its own
    session without re-rewriting or duplicating, and rewrites what arrived meanwhile."""
    first = start_provider()
    old = start_sidecar()
    wait_until(lambda: children(registry, providers) == [rewritten_name(first)], 5,
               message="first provider not rewritten")  # fmt: skip
    old_owner = registry.get(f"{providers}/{rewritten_name(first)}")[1].ephemeralOwner
    old.kill()

    second = start_provider()  # registers while no sidecar runs
    new = start_sidecar()
    both = sorted([rewritten_name(first), rewritten_name(second)])
    wait_until(lambda: children(registry, providers) == both, 5, message="did not converge")
    owners = {registry.get(f"{providers}/{name}")[1].ephemeralOwner for name in both}
    assert len(owners) == 1
    assert owners != {old_owner}
    assert [e["reason"] for e in new.logged("update")] == [
        f"taking over from an earlier run (session 0x{old_owner:x})"
    ]
    assert len(new.logged("rewrite")) == 1


def test_unmappable_registrations_are_untouched_and_reported_once(
    engine: DockerEngine,
    providers: str,
    registry: KazooClient,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """Malformed names, unknown protocols, unpublished ports and other hosts' addresses keep
    their exact name, data and version; each local one is reported once, across resyncs."""
    unpublished = start_provider(publish_all=False)
    ip = container_ip(unpublished)
    foreign = java_url_encode(f"dubbo://10.255.0.9:20880/{INTERFACE}?side=provider")
    odd_protocol = java_url_encode(f"memcached://{ip}:20880/{INTERFACE}?side=provider")
    for name in ("not%20a%20url", foreign, odd_protocol):
        registry.create(f"{providers}/{name}", b"as found", ephemeral=True)
    before = {n: registry.get(f"{providers}/{n}") for n in children(registry, providers)}

    sidecar = start_sidecar("--resync-seconds", "1")
    sidecar.wait_for_event("resync_done", count=3)

    after = {n: registry.get(f"{providers}/{n}") for n in children(registry, providers)}
    assert after == before
    reported = [e for e in sidecar.events("left_alone") if e["level"] == "info"]
    reasons = sorted(e["reason"] for e in reported)
    assert reasons == sorted(
        [
            f"port 20880 of container {unpublished.name} is not published",
            "malformed node name: does not start with protocol://",
            "unknown protocol 'memcached'",
        ]
    )
    assert sidecar.events("rewrite") == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_stops_the_sidecar_within_two_seconds(
    start_sidecar: Callable[..., SidecarProcess], sig: signal.Signals
) -> None:
    """SIGTERM and SIGINT (Ctrl-C) end the process cleanly (exit code 0) in under 2 s."""
    sidecar = start_sidecar()
    asked = time.monotonic()
    assert sidecar.terminate(timeout=5, sig=sig) == 0
    assert time.monotonic() - asked < 2.0
    assert sidecar.events("stopped")


def test_plan_prints_the_rewrite_and_writes_nothing(
    zookeeper: ZooKeeperServer,
    engine: DockerEngine,
    root: str,
    providers: str,
    registry: KazooClient,
    start_provider: Callable[..., Container],
) -> None:
    """`plan` shows the mapping it would apply, what decided it and why, and leaves the
    registry as it was."""
    provider = start_provider()
    registry.create(f"{providers}/garbage", b"x", ephemeral=True)
    before = {n: registry.get(f"{providers}/{n}") for n in children(registry, providers)}

    done = one_shot("plan", zookeeper.connect_string, root, engine.url)

    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split() == ["ACTION", "INTERFACE", "REGISTERED", "ADVERTISED", "CONTAINER",
                              "DECIDED", "BY", "REASON"]  # fmt: skip
    port = published_port(provider, "20880/tcp")
    assert provider.name is not None
    assert sorted(row.split()[:5] for row in rows) == sorted(
        [
            ["leave", INTERFACE, "-", "-", "-"],
            ["rewrite", INTERFACE, f"{container_ip(provider)}:20880", f"127.0.0.1:{port}",
             provider.name],
        ]
    )  # fmt: skip
    [rewrite] = [row for row in rows if row.startswith("rewrite")]
    assert " per-host, address from --advertise-host  container " in rewrite
    [leave] = [row for row in rows if row.startswith("leave")]
    assert "malformed node name: " in leave
    after = {n: registry.get(f"{providers}/{n}") for n in children(registry, providers)}
    assert after == before


def test_one_changed_provider_rereads_only_its_own_path(
    zookeeper: ZooKeeperServer,
    root: str,
    registry: KazooClient,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """With thousands of registrations present, a new provider costs the sidecar a handful of
    ZooKeeper requests, not a re-list of the registry (counted by the server itself)."""
    names = [java_url_encode(f"dubbo://10.9.{i // 250}.{i % 250}:20880/svc{i % 500}?side=provider")
             for i in range(5000)]  # fmt: skip
    for i in range(500):
        registry.ensure_path(f"{root}/svc{i}/providers")
    pending = [registry.create_async(f"{root}/svc{i % 500}/providers/{n}", b"")
               for i, n in enumerate(names)]  # fmt: skip
    for request in pending:
        request.get(timeout=30)
    start_sidecar()

    def requests_served() -> int:
        stats = dict(line.split("\t", 1) for line in zookeeper.four_letter("mntr").splitlines())
        return int(stats["zk_packets_received"])

    before = requests_served()
    provider = start_provider()
    providers = f"{root}/{INTERFACE}/providers"
    wait_until(lambda: children(registry, providers) == [rewritten_name(provider)], 5,
               message="not rewritten")  # fmt: skip
    assert requests_served() - before < 200


def test_second_sidecar_on_the_same_engine_stands_by_until_the_first_is_gone(
    providers: str,
    registry: KazooClient,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """Two sidecars never fight over one engine's nodes: while the first lives the second
    stands by and writes nothing; once the first is killed, the second takes the lease and
    the registrations over in one transaction each, with no duplicate."""
    provider = start_provider()
    first = start_sidecar()
    rewritten = rewritten_name(provider)
    wait_until(lambda: children(registry, providers) == [rewritten], 5, message="not rewritten")
    path = f"{providers}/{rewritten}"

    second = start_sidecar(ready=False)
    second.wait_for_event("lease_standing_by")
    assert registry.get(path)[1].ephemeralOwner == first.session
    assert not [e for e in second.events() if e["event"] in ("rewrite", "update", "remove")]

    first.kill()
    wait_until(lambda: registry.get(path)[1].ephemeralOwner == second.session, 10,
               message="the second sidecar did not take over")  # fmt: skip
    assert children(registry, providers) == [rewritten]
    assert second.events("lease_held")
