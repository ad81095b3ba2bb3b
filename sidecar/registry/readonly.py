"""A registry that refuses writes, for ``plan`` and ``status``."""

from __future__ import annotations

from collections.abc import Callable

from sidecar.model import Outcome, Transaction, WriteResult
from sidecar.registry.zookeeper import ZooKeeperRegistry


class ReadOnlyRegistry(ZooKeeperRegistry):
    """A registry that reads like any other and refuses every write: ``plan`` and ``status``
    run a pass of the loop against it."""

    def start(
        self, transactions: list[Transaction], batched: bool = True
    ) -> Callable[[], list[WriteResult]]:
        refused = [WriteResult(Outcome.DRY_RUN)] * len(transactions)
        return lambda: refused

    def acquire(self, path: str, data: bytes, take_from: int | None = None) -> bool:
        return False

    def release(self, path: str) -> None:
        return
