"""A fleet of sidecars (--fleet) on one in-memory registry, for the fleet's unit tests."""

from __future__ import annotations

from sidecar.fleet.indexer import WORK
from sidecar.fleet.work import parse_part, part_path
from sidecar.model import Container, Origin, PublishedPort
from tests.twins import FixedOrigins, MemoryEngine, MemoryRegistry
from tests.unit.harness import Harness

PROVIDER = 0x2002  # the session of host 0's provider


def fleet(
    size: int,
    together: bool = True,
    tree: MemoryRegistry | None = None,
    **options: object,
) -> tuple[list[Harness], MemoryRegistry]:
    """``size`` hosts 192.0.2.1..; each runs one container at the same address 172.17.0.5
    (every default bridge hands it out), each host's own provider session connects from its
    host's address. ``together`` False: the same hosts without --fleet. ``tree``: a registry
    that holds something already; ``options``: settings of every host."""
    said = {PROVIDER: Origin("192.0.2.1", "zk")}  # what the servers say, to every host
    tree = tree or MemoryRegistry(session=0x5000)
    hosts = []
    for i in range(size):
        container = Container(f"c{i}".ljust(64, "0"), f"shop-{i}", "bridge", ("172.17.0.5",),
                              (PublishedPort(20880, "0.0.0.0", 32768),))  # fmt: skip
        registry = tree if i == 0 else tree.another(0x5000 + i)
        hosts.append(Harness(
            registry=registry, engine=MemoryEngine({container.id: container}, identity=f"E{i}@h"),
            origins=FixedOrigins(said), options={"fleet": together, **options},
            engine_id=f"E{i}@h",
            host=f"192.0.2.{i + 1}",
        ))  # fmt: skip
    for host in hosts:
        host.start()
    settle(hosts)
    return hosts, tree


def settle(hosts: list[Harness]) -> None:
    """Every host's pending work done, as often as notifications take to travel."""
    for _ in range(5):
        for host in hosts:
            host.settle()


def later(hosts: list[Harness], seconds: float = 2.0, resync: bool = False) -> None:
    """Time passes on every host (the servers' earlier answers age, retries fall due), and
    each does what fell due; ``resync``: a periodic resync too."""
    for host in hosts:
        host.clock.now += seconds
        if resync:
            host.dirty.periodic()
        host.due()
    settle(hosts)


def indexer_dies(hosts: list[Harness], tree: MemoryRegistry) -> list[Harness]:
    """The indexer's session ends; the others settle (electing the next); the others."""
    [indexer] = [h for h in hosts if h.fleet and h.fleet.indexer]
    tree.expire(indexer.registry.session)
    rest = [h for h in hosts if h is not indexer]
    settle(rest)
    return rest


def work_of(tree: MemoryRegistry, host: Harness) -> dict[str, tuple[str, int]]:
    """The paths the indexer published as this host's work."""
    member = host.fleet.member_id if host.fleet else ""
    node = tree.nodes.get(part_path(WORK, member, 0))
    if node is None:
        return {}
    first = parse_part(node.data)
    found = dict(first.paths)
    for i in range(1, first.parts):
        found.update(parse_part(tree.nodes[part_path(WORK, member, i)].data).paths)
    return found


def provider_on(hosts: list[Harness], index: int, session: int) -> str:
    """From now on the servers say ``session`` connects from host ``index`` (every host
    hears the same servers); that host's address."""
    address = f"192.0.2.{index + 1}"
    said = hosts[0].origins.origins
    assert said is not None
    said[session] = Origin(address, "zk")
    return address
