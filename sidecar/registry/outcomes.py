"""How the results of ZooKeeper ``multi`` requests become outcomes, and how transactions
travel together in batches bounded by what the servers accept (their size in bytes)."""

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

from sidecar.model import Create, Op, Outcome, SetData, Transaction, WriteResult

# Operations per multi when several transactions travel together: a batch that fails is sent
# again one transaction at a time, so each gets its own outcome, at a request each.
BATCH_OPS = 64
# The servers' jute.maxbuffer by default (0xfffff): a request whose body is larger closes its
# connection ("Len error"), as a multi larger than that does.
JUTE_MAXBUFFER = 0xFFFFF
_MULTI_HEADER = 4 + 1 + 4  # type, done, err: before each operation, and once at the end
# A request this large may be why a server closed the connection it travelled on...
SUSPECT_BYTES = 64 << 10
# ...and one that travelled alone and was dropped this many times more is too large.
DROPS_ALONE = 2
_REQUEST_HEADER = 4 + 4  # xid, type


class Interrupted(Exception):
    """The sidecar is stopping; the request's result is no longer awaited."""


class Failed:
    """A request that failed before it was sent; ``get`` raises its error."""

    def __init__(self, error: Exception) -> None:
        self._error = error

    def get(self, timeout: float | None = None) -> Any:
        raise self._error


class TooLarge(Exception):
    """A transaction larger than the servers accept: never sent, it would fail every time."""


def request_size(transaction: Transaction | list[Transaction], acl_size: int) -> int:
    """The bytes of the ``multi`` request body that carries these operations (what the
    servers bound by jute.maxbuffer). ``acl_size``: the encoded ACL list each create carries."""
    transactions = transaction if isinstance(transaction, list) else [transaction]
    ops = [op for t in transactions for op in t.ops]
    body = sum(_MULTI_HEADER + op_size(op, acl_size) for op in ops)
    return _REQUEST_HEADER + body + _MULTI_HEADER


def op_size(op: Op, acl_size: int) -> int:
    """The bytes of one operation's body: its path, and what else it carries."""
    path = 4 + len(op.path.encode("utf-8", "surrogatepass"))
    match op:
        case Create(data=data):
            return path + 4 + len(data) + acl_size + 4  # flags
        case SetData(data=data):
            return path + 4 + len(data) + 4  # version
        case _:
            return path + 4  # delete, check: a version


def batches(
    transactions: list[Transaction],
    budget: int,
    acl_size: int,
    drops: Drops,
    together: bool = True,
) -> Iterable[tuple[list[Transaction], int, TooLarge | None]]:
    """The transactions, in order, in batches of at most BATCH_OPS operations and ``budget``
    bytes of request, with each batch's size (one each unless ``together``; one the servers
    dropped travels alone). A transaction too large to send comes alone, with why."""
    batch: list[Transaction] = []
    ops = size = 0
    for transaction in transactions:
        own = request_size(transaction, acl_size)
        verdict = drops.verdict(transaction)
        if own > budget:
            verdict = TooLarge(f"a {own}-byte request, over the servers' {budget} (jute.maxbuffer)")
        alone = verdict is not None or drops.alone(transaction)
        # One header and one end mark for the whole batch.
        grown = size + own - _REQUEST_HEADER - _MULTI_HEADER if batch else own
        full = not together or alone or ops + len(transaction.ops) > BATCH_OPS or grown > budget
        if batch and full:
            yield batch, size, None
            batch, ops, grown = [], 0, own
        if alone:
            yield [transaction], own, verdict
            continue
        batch.append(transaction)
        ops += len(transaction.ops)
        size = grown
    if batch:
        yield batch, size, None


class Drops:
    """Transactions whose request the servers dropped: the connection closed while a large
    request was in flight, as a server closes it for a request over its jute.maxbuffer
    (which may be lower than the setting says). A dropped batch's transactions travel alone
    from then on; one dropped alone again and again is too large for these servers."""

    def __init__(self) -> None:
        self._alone: dict[Transaction, int] = {}  # -> drops while travelling alone

    def dropped(self, batch: list[Transaction], size: int) -> None:
        """The connection closed while this batch (a ``size``-byte request) was in flight."""
        if size < SUSPECT_BYTES:
            return  # a small request is not why a server closes a connection
        for transaction in batch:
            drops = self._alone.get(transaction)
            self._alone[transaction] = 0 if drops is None or len(batch) > 1 else drops + 1

    def settled(self, transaction: Transaction) -> None:
        """It got an answer: nothing is known against it any more."""
        self._alone.pop(transaction, None)

    def alone(self, transaction: Transaction) -> bool:
        return transaction in self._alone

    def verdict(self, transaction: Transaction) -> TooLarge | None:
        if self._alone.get(transaction, 0) < DROPS_ALONE:
            return None
        return TooLarge(f"the servers closed the connection each of {DROPS_ALONE + 1} times "
                        "it was sent alone: larger than their jute.maxbuffer")  # fmt: skip


def acl_size(acl: Iterable[Any]) -> int:
    """The bytes of an encoded ACL list (kazoo ACLs: perms, id.scheme, id.id)."""
    return 4 + sum(4 + 8 + len(a.id.scheme.encode()) + len(a.id.id.encode()) for a in acl)


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
    if isinstance(cause, TooLarge):
        return WriteResult(Outcome.TOO_LARGE, str(cause))
    if isinstance(cause, NoAuthError):
        outcome = Outcome.DENIED
    elif isinstance(cause, _UNKNOWN):
        outcome = Outcome.UNKNOWN
    else:
        outcome = Outcome.FAILED
    return WriteResult(outcome, type(cause).__name__)
