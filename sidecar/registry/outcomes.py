"""How the results of ZooKeeper ``multi`` requests become outcomes, and how transactions
travel together in batches."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kazoo.exceptions import (
    ConnectionLoss,
    NoAuthError,
    OperationTimeoutError,
    RolledBackError,
    SessionExpiredError,
)

from sidecar.model import Outcome, Transaction, WriteResult

# Operations per multi when several transactions travel together (well below jute.maxbuffer:
# an operation carries one node name and its data, about a kilobyte).
BATCH_OPS = 64


class Interrupted(Exception):
    """The sidecar is stopping; the request's result is no longer awaited."""


class Failed:
    """A request that failed before it was sent; ``get`` raises its error."""

    def __init__(self, error: Exception) -> None:
        self._error = error

    def get(self, timeout: float | None = None) -> Any:
        raise self._error


def batches(transactions: list[Transaction]) -> Iterable[list[Transaction]]:
    batch: list[Transaction] = []
    size = 0
    for transaction in transactions:
        if batch and size + len(transaction.ops) > BATCH_OPS:
            yield batch
            batch, size = [], 0
        batch.append(transaction)
        size += len(transaction.ops)
    if batch:
        yield batch


def cause(result: Any) -> Exception | None:
    """The error behind a multi's result (None: applied); the first failing operation's,
    not the roll-backs of the others."""
    if isinstance(result, Exception):
        return result
    failures = [r for r in result if isinstance(r, Exception)]
    if not failures:
        return None
    return next((r for r in failures if not isinstance(r, RolledBackError)), failures[0])


# Errors after which a transaction may or may not have been applied.
_UNKNOWN = (ConnectionLoss, SessionExpiredError, OperationTimeoutError, Interrupted)


def outcome(cause: Exception | None) -> WriteResult:
    if cause is None:
        return WriteResult(Outcome.APPLIED)
    if isinstance(cause, NoAuthError):
        outcome = Outcome.DENIED
    elif isinstance(cause, _UNKNOWN):
        outcome = Outcome.UNKNOWN
    else:
        outcome = Outcome.FAILED
    return WriteResult(outcome, type(cause).__name__)
