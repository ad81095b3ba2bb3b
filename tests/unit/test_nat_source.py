"""The NAT table as a source, on in-memory twins: a pod's hostPort rewrites its provider's
registration and its removal restores it; a failed read changes nothing and says so; the
sources' precedence; ``--nat-ignore``; the watch thread hands over what it read."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from sidecar import urls
from sidecar.config import ConfigError, load_settings
from sidecar.loop.dirty import Work
from sidecar.mapping import Mapped
from sidecar.model import Container, Endpoint, PublishedPort
from sidecar.natrules import NatMapping, parse
from sidecar.sources.nat import NatSnapshot, NatUnreadable, NatWatch
from testbed.polling import wait_until
from tests.twins import MemoryEngine
from tests.unit.harness import PROVIDERS, Harness
from tests.unit.scenarios import url_name

POD = "3f2a" * 16
POD_IP = "10.88.0.5"
ORIGINAL = url_name(POD_IP)
CNI = NatMapping(POD_IP, 20880, 30880, "", "CNI-DN-1a2b3c4d5e6f7a8b9c0d1", POD)
DOCKER_RULE = NatMapping(POD_IP, 20880, 32768, "", "DOCKER")


class Table:
    """What the NAT watch last read, as the loop sees it."""

    def __init__(self, *mappings: NatMapping) -> None:
        self.now(*mappings)

    def __call__(self) -> NatSnapshot:
        return self.snapshot

    def now(self, *mappings: NatMapping) -> None:
        networks = ("10.88.0.0/16",) if mappings else ()  # the pods' network, as CNI's say
        self.snapshot = NatSnapshot(tuple(sorted(mappings)), "", networks)

    def fails(self, problem: str) -> None:
        self.snapshot = NatSnapshot(self.snapshot.mappings, problem)


def _twin(table: Table, **options: object) -> Harness:
    harness = Harness(
        engine=MemoryEngine({}), nat=table,
        options={"docker_url": "none", "nat_table": True, **options},
    )  # fmt: skip
    harness.registry.add(f"{PROVIDERS}/{ORIGINAL}")
    return harness


def _rewritten(port: int = 30880) -> str:
    return urls.parse(ORIGINAL).with_endpoint(Endpoint("192.0.2.10", port))


def test_a_pods_host_port_rewrites_and_plan_names_the_rule() -> None:
    """Without Docker, a hostPort published by CNI portmap rewrites the pod's registration
    to the host port; the decision names the rule's chain and the pod."""
    twin = _twin(Table(CNI))
    with capture_logs() as logs:
        twin.start()
    assert twin.providers() == [_rewritten()]
    [rewrite] = [e for e in logs if e["event"] == "rewrite"]
    assert rewrite["container"] == f"nat: CNI-DN-1a2b3c4d5e6f for container {POD[:12]}"


def test_a_pod_published_after_its_registration_is_rewritten() -> None:
    """A registration read while no rule published its address (nor named its network) is
    rewritten once the pod's hostPort is published."""
    table = Table()
    twin = _twin(table)
    twin.start()
    assert twin.providers() == [ORIGINAL]
    table.now(CNI)
    twin.run(Work(nat=True))
    twin.settle()
    assert twin.providers() == [_rewritten()]


def test_when_the_rule_goes_the_rewrite_goes() -> None:
    """The pod deleted (CNI DEL removed its rules): its rewrite is removed, as a stopped
    container's is."""
    table = Table(CNI)
    twin = _twin(table)
    twin.start()
    table.now()
    with capture_logs() as logs:
        twin.run(Work(nat=True))
        twin.settle()
    assert twin.providers() == []
    assert [e["original"] for e in logs if e["event"] == "remove"] == [f"{POD_IP}:20880"]


def test_a_changed_host_port_repoints_the_rewrite() -> None:
    """The pod recreated with another hostPort: the rewrite follows."""
    table = Table(CNI)
    twin = _twin(table)
    twin.start()
    table.now(NatMapping(POD_IP, 20880, 31000, "", CNI.chain, POD))
    twin.run(Work(nat=True))
    twin.settle()
    assert twin.providers() == [_rewritten(31000)]


def test_a_failed_read_keeps_the_rewrites_and_readiness_says_why() -> None:
    """A read that fails (no NET_ADMIN, no iptables) removes nothing: the last mappings stay;
    the problem is logged once and makes the sidecar not ready until a read succeeds."""
    table = Table(CNI)
    twin = _twin(table)
    twin.start()
    table.fails("iptables-nft-save -t nat: Permission denied (you must be root)")
    with capture_logs() as logs:
        for _ in range(3):
            twin.run(Work(nat=True, all_containers=True))
    assert twin.providers() == [_rewritten()]
    assert [e["event"] for e in logs if e["event"].startswith("nat_table")] == [
        "nat_table_unreadable"
    ]
    assert "Permission denied" in twin.components.inventory.nat_not_ready()
    table.now(CNI)
    twin.run(Work(nat=True))
    assert twin.components.inventory.nat_not_ready() == ""


def test_before_the_first_read_nothing_is_changed() -> None:
    """A sidecar restarted before it could read the table once does not take the rewrites
    it recorded for gone; the first read then does everything."""
    first = _twin(Table(CNI))
    first.start()
    table = Table()
    table.snapshot = NatSnapshot(None, "")
    twin = Harness(registry=first.registry, engine=MemoryEngine({}), nat=table,
                   options={"docker_url": "none", "nat_table": True})  # fmt: skip
    with capture_logs() as logs:
        twin.start()
        twin.settle()
    assert twin.providers() == [_rewritten()]
    assert not [e for e in logs if e["event"] in ("remove", "restore")]
    assert twin.components.inventory.nat_not_ready() == "NAT table not read yet"
    table.now(CNI)
    twin.run(Work(nat=True))
    twin.settle()
    assert twin.providers() == [_rewritten()]
    assert twin.components.inventory.nat_not_ready() == ""


def test_docker_wins_over_the_nat_table_for_its_containers() -> None:
    """With the Docker source on, a container Docker knows is mapped as Docker says (its
    labels count: this one opted out), whatever the NAT table holds for its address."""
    opted_out = Container("d" * 64, "shop", "bridge", (POD_IP,),
                          (PublishedPort(20880, "0.0.0.0", 32768),),
                          labels=(("dubbo-nat-sidecar.enable", "false"),))  # fmt: skip
    twin = Harness(engine=MemoryEngine({opted_out.id: opted_out}), nat=Table(CNI, DOCKER_RULE),
                   options={"nat_table": True})  # fmt: skip
    twin.registry.add(f"{PROVIDERS}/{ORIGINAL}")
    twin.start()
    assert twin.providers() == [ORIGINAL]
    assert [c.id for c in twin.components.inventory.nat_in_force] == []


def test_docker_rules_are_left_to_the_docker_source() -> None:
    """With the Docker source on, the DOCKER chain's rules are not mapped a second time
    (a container starting is seen by Docker's events, with its labels)."""
    table = Table(DOCKER_RULE, replace(CNI, container_ip="10.88.0.6"))
    twin = Harness(engine=MemoryEngine({}), nat=table, options={"nat_table": True})
    twin.start()
    assert [c.addresses for c in twin.components.inventory.nat_in_force] == [("10.88.0.6",)]


def test_the_static_mapping_wins_over_the_nat_table(tmp_path: Path) -> None:
    """An address the static mapping names is mapped by it, not by the NAT table."""
    mapping = tmp_path / "ports.toml"
    mapping.write_text(f'addresses = ["{POD_IP}"]\n[ports]\n20880 = 40000\n')
    twin = _twin(Table(CNI), static_file=str(mapping))
    twin.start()
    twin.run(Work(static=True))  # the file is acted on once read the same twice
    mapped = twin.components.inventory.index.resolve(Endpoint(POD_IP, 20880), "192.0.2.10")
    assert isinstance(mapped, Mapped)
    assert (mapped.container.id, mapped.advertised.port) == ("static", 40000)
    assert twin.components.inventory.nat_in_force == ()


def test_nat_ignore_leaves_an_address_alone() -> None:
    """An address listed in --nat-ignore is not rewritten, though a rule publishes it."""
    twin = _twin(Table(CNI), nat_ignore="10.88.0.0/16:20880")
    twin.start()
    assert twin.providers() == [ORIGINAL]


def test_the_watch_reads_at_start_and_hands_over_what_it_read() -> None:
    """The watch thread reads the table once at start, tells the loop (it only marks work),
    keeps the snapshot for it, and ends when stopped."""
    told = threading.Event()
    dump = "*nat\n-A DOCKER -p tcp -m tcp --dport 32768 -j DNAT --to-destination 10.0.0.2:80\n"
    watch = NatWatch(told.set, read=lambda: dump)
    watch.start()
    try:
        assert told.wait(10)
        assert watch.latest() == NatSnapshot(parse(dump))
    finally:
        watch.stop()
    wait_until(lambda: not watch._thread.is_alive(), 10)


def test_a_failing_read_keeps_the_last_snapshot() -> None:
    """A read that fails after a good one keeps the good mappings, with the reason."""
    answers = ["*nat\n-A DOCKER -p tcp --dport 1 -j DNAT --to-destination 10.0.0.2:80\n"]

    def read() -> str:
        if answers:
            return answers.pop()
        raise NatUnreadable("iptables-save: not found")

    watch = NatWatch(lambda: None, read=read)
    good = watch.read_now()
    assert watch.read_now() == NatSnapshot(good.mappings, "iptables-save: not found")


def test_the_nat_table_alone_is_a_source_and_a_bad_ignore_entry_is_refused() -> None:
    """`--docker-url none --nat-table` needs no static mapping; a `--nat-ignore` entry that
    names nothing, or one without `--nat-table`, is refused naming the setting."""
    assert load_settings({"docker_url": "none", "nat_table": True}).nat_table
    with pytest.raises(ConfigError, match="--nat-ignore"):
        load_settings({"docker_url": "none", "nat_table": True, "nat_ignore": "10.0.0.0/33"})
    with pytest.raises(ConfigError, match="--nat-table"):
        load_settings({"nat_ignore": ":8080"})
