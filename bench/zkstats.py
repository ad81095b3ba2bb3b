"""What a ZooKeeper ensemble says about its load: ``mntr`` summed over its running servers,
their CPU time, and which sessions are connected (``cons``).

Every four-letter word counts as a received packet, so the ones asked here are counted and
left out of :func:`packets`: the figures are the clients' requests, not the bench's polls.
"""

from __future__ import annotations

from collections import Counter

from bench.workload import process_cpu
from sidecar.registry.sessions import parse_cons
from testbed.ensemble import ZooKeeperEnsemble
from testbed.zookeeper import ZooKeeperServer

_asked: Counter[int] = Counter()  # per server (client port): four-letter words sent


def _ask(server: ZooKeeperServer, word: str) -> str:
    _asked[server.port] += 1
    return server.four_letter(word)


def running(ensemble: ZooKeeperEnsemble) -> list[ZooKeeperServer]:
    return [server for server in ensemble.servers if server.running]


def mntr(server: ZooKeeperServer) -> dict[str, float]:
    """One server's numeric ``mntr`` figures."""
    values = {}
    for line in _ask(server, "mntr").splitlines():
        key, _, value = line.partition("\t")
        try:
            values[key] = float(value)
        except ValueError:
            continue
    return values


def total(ensemble: ZooKeeperEnsemble, key: str) -> float:
    """An ``mntr`` figure summed over the running servers (each counts its own clients)."""
    return sum(mntr(server)[key] for server in running(ensemble))


def packets(ensemble: ZooKeeperEnsemble) -> float:
    """Requests received from clients so far, four-letter words asked here left out."""
    return sum(
        mntr(server)["zk_packets_received"] - _asked[server.port] for server in running(ensemble)
    )


def restarted(server: ZooKeeperServer) -> None:
    """A server started again counts from 0: what it counted while starting up were the
    readiness checks, not clients."""
    _asked[server.port] = 0
    _asked[server.port] = int(mntr(server)["zk_packets_received"])


def cpu_seconds(ensemble: ZooKeeperEnsemble) -> float:
    return sum(process_cpu(server.pid) for server in running(ensemble) if server.pid)


def connected_sessions(ensemble: ZooKeeperEnsemble) -> set[int]:
    found: set[int] = set()
    for server in running(ensemble):
        found |= set(parse_cons(_ask(server, "cons")))
    return found
