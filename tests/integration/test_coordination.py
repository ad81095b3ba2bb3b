"""The coordination recipes alone, on a real ZooKeeper: the cases in
tests/coordination_cases.py (the same ones run on the in-memory twin)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from kazoo.client import KazooClient
from kazoo.security import make_acl

from sidecar.registry.zookeeper import ZooKeeperRegistry
from testbed.zookeeper import ZooKeeperServer
from tests.coordination_cases import CASES, Client, Clients

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


class ServerClients(Clients):
    """Sessions of the sidecar's own registry client on one server; closed by ``close``."""

    def __init__(self, server: ZooKeeperServer, admin: KazooClient) -> None:
        self._server = server
        self._admin = admin
        self._opened: list[ZooKeeperRegistry] = []

    def new(self) -> Client:
        changed: list[str] = []
        registry = ZooKeeperRegistry(
            self._server.connect_string, 10, changed.append, lambda _: None
        )
        self._opened.append(registry)
        registry.connect(15)
        return Client(registry, changed)

    def forbid_writes(self, path: str) -> None:
        self._admin.ensure_path(path.rpartition("/")[0])
        self._admin.create(path, b"", acl=[make_acl("world", "anyone", read=True)])

    def close(self) -> None:
        for registry in self._opened:
            registry.close()


@pytest.fixture
def clients(zookeeper: ZooKeeperServer, registry: KazooClient, root: str) -> Iterator[Clients]:
    """Sessions on the test server; every one closed, and the test's nodes removed, after."""
    opened = ServerClients(zookeeper, registry)
    try:
        yield opened
    finally:
        opened.close()
        if registry.exists(root):
            registry.delete(root, recursive=True)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__)
def test_each_recipe_holds_its_case_on_zookeeper(
    case: Callable[[Clients, str], None], clients: Clients, root: str
) -> None:
    """Each recipe behaves on a real ZooKeeper as its case says (one docstring per case)."""
    case(clients, root)
