"""The coordination recipes alone, on the in-memory twin: the cases in
tests/coordination_cases.py (the same ones run on a real ZooKeeper)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.coordination_cases import CASES, Client, Clients
from tests.twins import MemoryRegistry, Tree


class TwinClients(Clients):
    """Sessions on one in-memory tree."""

    def __init__(self) -> None:
        self._tree = Tree()
        self._next = 0x7000

    def new(self) -> Client:
        self._next += 1
        client = Client(MemoryRegistry(session=self._next, tree=self._tree))
        assert isinstance(client.registry, MemoryRegistry)
        client.registry.on_change = client.changed.append
        return client

    def forbid_writes(self, path: str) -> None:
        MemoryRegistry(session=0, tree=self._tree).add(path)
        self._tree.unwritable.add(path)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__)
def test_each_recipe_holds_its_case_on_the_twin(case: Callable[[Clients, str], None]) -> None:
    """Each recipe behaves on the twin as its case says (one docstring per case)."""
    case(TwinClients(), "/coordination")
