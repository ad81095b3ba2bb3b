"""A registry that refuses writes, for ``plan`` and ``status``."""

from __future__ import annotations

from collections.abc import Callable

from sidecar.model import Outcome, Transaction, WriteResult
from sidecar.registry.zookeeper import ZooKeeperRegistry


class ReadOnlyRefusal(Exception):
    """A write asked of the read-only registry (``plan`` and ``status`` write nothing)."""


class ReadOnlyRegistry(ZooKeeperRegistry):
    """A registry that reads like any other and refuses every write: ``plan`` and ``status``
    run a pass of the loop against it. ``put`` writes through ``start``, refused too."""

    def start(
        self, transactions: list[Transaction], batched: bool = True
    ) -> Callable[[], list[WriteResult]]:
        refused = [WriteResult(Outcome.DRY_RUN)] * len(transactions)
        return lambda: refused

    def acquire(self, path: str, data: bytes, take_from: int | None = None) -> bool:
        return False

    def release(self, path: str) -> None:
        return

    def join(self, prefix: str, data: bytes) -> str:
        raise ReadOnlyRefusal(f"not joining {prefix}: plan and status write nothing")
