"""Where ZooKeeper is read, watched and written: the only module that calls kazoo.

Reads set one-shot watches whose callback only reports the path; writes are ``multi``
transactions built by the planner. Every request is asynchronous and waited for in short
slices, so that a stop request is honoured even while ZooKeeper does not answer.
Everything kazoo returns is turned into typed values here.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Collection, Iterable
from typing import Any, TypeVar

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import (
    ConnectionLoss,
    NoAuthError,
    NodeExistsError,
    NoNodeError,
    OperationTimeoutError,
    RolledBackError,
    SessionExpiredError,
)
from kazoo.handlers.threading import SequentialThreadingHandler
from kazoo.protocol.states import EventType, WatchedEvent
from kazoo.retry import KazooRetry
from kazoo.security import CREATOR_ALL_ACL

from sidecar.model import (
    Check,
    Connection,
    Create,
    Delete,
    Outcome,
    RegistryNode,
    SetData,
    Transaction,
    WriteResult,
)
from sidecar.progress import Progress
from sidecar.registry.cache import ReadCache

# Pipelined reads: enough in flight to hide round trips, few enough to bound memory.
_PIPELINE_DEPTH = 500
# Operations per multi when several transactions travel together (well below jute.maxbuffer:
# an operation carries one node name and its data, about a kilobyte).
_BATCH_OPS = 64
_WAIT_SLICE = 0.25
K = TypeVar("K")


class Interrupted(Exception):
    """The sidecar is stopping; the request's result is no longer awaited."""


class ZooKeeperRegistry:
    """A ZooKeeper session plus the reads and writes the sidecar needs."""

    def __init__(
        self,
        hosts: str,
        session_timeout: float,
        on_change: Callable[[str], None],
        on_connection: Callable[[Connection], None],
        resume: tuple[int, bytes] | None = None,
        stopping: threading.Event | None = None,
        digest: str | None = None,
        mark: Callable[[socket.socket], None] | None = None,
    ) -> None:
        """``resume``: the (session id, password) of a session to continue, if still alive;
        ``stopping``: set when requests should no longer be waited for; ``digest``:
        ``user:password`` credentials, which also make created nodes CREATOR_ALL; ``mark``:
        applied to each connection (so that the proxy's capture lets the sidecar's own pass)."""
        self._on_change = on_change
        self._on_connection = on_connection
        self._stopping = stopping or threading.Event()
        self._known_parents: set[str] = set()
        self._acl = CREATOR_ALL_ACL if digest else None
        self.denied: set[str] = set()  # what the last read was not allowed to read
        self._cache = ReadCache()
        self._client = KazooClient(
            hosts=hosts,
            timeout=session_timeout,
            client_id=resume,
            auth_data=[("digest", digest)] if digest else None,
            connection_retry=KazooRetry(max_tries=-1, max_delay=5),
            command_retry=KazooRetry(max_tries=3, max_delay=2),
            handler=_MarkingHandler(mark) if mark else None,
        )
        self._client.add_listener(self._state_changed)

    def connect(self, timeout: float) -> None:
        """Open the session, waiting at most ``timeout``; raise ConnectionError if none answers."""
        try:
            self._client.start(timeout=timeout)
        except self._client.handler.timeout_exception:
            raise ConnectionError(f"no ZooKeeper server answered within {timeout:g} s") from None

    def connect_in_background(self) -> None:
        """Start connecting and return; the connection listener reports when the session is up."""
        self._client.start_async()

    def close(self, timeout: float = 1.0) -> None:
        """Close the session (every ephemeral node it owns disappears), waiting at most
        ``timeout``: with ZooKeeper unreachable the session cannot be closed anyway."""
        closer = threading.Thread(target=self._close, name="zookeeper-close", daemon=True)
        closer.start()
        closer.join(timeout)

    def _close(self) -> None:
        self._client.stop()
        self._client.close()

    @property
    def session_id(self) -> int:
        client_id = self._client.client_id
        return int(client_id[0]) if client_id else 0

    @property
    def session_password(self) -> bytes:
        client_id = self._client.client_id
        return bytes(client_id[1]) if client_id else b""

    @property
    def connected(self) -> bool:
        return bool(self._client.connected)

    @property
    def alive(self) -> bool:
        """Whether the client's connection thread still runs (or was never started or was
        stopped on purpose): when it dies, nothing ever connects again."""
        routine = self._client._connection._connection_routine
        return routine is None or routine.is_alive() or self._client._stopped.is_set()

    def take_denied(self) -> set[str]:
        """The paths reads were not allowed to read since the last call."""
        denied, self.denied = self.denied, set()
        return denied

    def owner_of(self, path: str) -> int | None:
        """The session owning the ephemeral node ``path`` (None if absent); watched."""
        stat = self._wait(self._client.exists_async(path, watch=self._watched))
        return int(stat.ephemeralOwner) if stat is not None else None

    def read_data(self, path: str) -> bytes | None:
        try:
            data, _ = self._wait(self._client.get_async(path))
        except NoNodeError:
            return None
        return bytes(data or b"")

    def acquire(self, path: str, data: bytes, take_from: int | None = None) -> bool:
        """Create the ephemeral node ``path`` in this session; if ``take_from`` owns it, take it
        over in one transaction. True if this session owns it afterwards. Watched."""
        self._ensure_parent(path)
        try:
            self._wait(self._client.create_async(path, data, acl=self._acl, ephemeral=True))
        except NodeExistsError:
            stat = self._wait(self._client.exists_async(path))
            if stat is not None and take_from is not None and stat.ephemeralOwner == take_from:
                request = self._client.transaction()
                request.delete(path, version=stat.version)
                request.create(path, data, acl=self._acl, ephemeral=True)
                self._wait(request.commit_async())
        return self.owner_of(path) == self.session_id

    def list_children(self, path: str) -> list[str]:
        """Children of ``path``, watched; none, and a watch for its creation, if it is absent."""
        try:
            return list(self._wait(self._client.get_children_async(path, watch=self._watched)))
        except NoAuthError:
            self.denied.add(path)
            return []
        except NoNodeError:
            if self.owner_of(path) is not None:  # created since the listing: read it again
                self._on_change(path)
            return []

    def providers_paths(self, root: str) -> list[str]:
        """The ``providers`` path of every interface under a registry root (watching the root)."""
        return [f"{root}/{name}/providers" for name in self.list_children(root)]

    def read_paths(
        self,
        parents: Iterable[str],
        progress: Callable[[str, int, int], None] | None = None,
        uncached: Collection[str] = (),
        watch: bool = True,
    ) -> dict[str, list[RegistryNode]]:
        """Every node under each path, read pipelined; watches set on each parent (unless
        ``watch`` is False: paths only this sidecar's own engine changes).

        A parent that does not exist yet maps to an empty list and gets an existence watch.
        Paths and nodes this session may not read are left out and listed in ``denied``.
        ``progress(phase, done, total)`` is told how a long read goes, every few seconds.
        Children of ``uncached`` paths are always read: their data may change in place.
        """
        parents = list(parents)
        report = Progress(progress)
        nodes: dict[str, list[RegistryNode]] = {parent: [] for parent in parents}
        listings, versions = self._list(parents, uncached, nodes, report, watch)
        children = [(parent, name) for parent in parents for name in listings[parent]]

        def get(child: tuple[str, str]) -> Any:
            # Data that changes in place (instances) is watched: a change re-reads the path.
            watch = self._watched if child[0] in uncached else None
            return self._client.get_async(f"{child[0]}/{child[1]}", watch=watch)

        for done, ((parent, name), result) in enumerate(self._pipelined(children, get)):
            report("reading registrations", done, len(children))
            if isinstance(result, NoNodeError):
                continue  # deleted since the listing; its parent's watch has fired
            if isinstance(result, NoAuthError):
                self.denied.add(f"{parent}/{name}")
                continue
            if isinstance(result, Exception):
                raise result
            data, stat = result
            nodes[parent].append(
                RegistryNode(parent, name, data or b"", stat.ephemeralOwner, stat.version)
            )
        for parent, version in versions.items():
            if parent not in uncached:
                self._cache.store(parent, version, nodes[parent])
        return nodes

    def _list(
        self,
        parents: list[str],
        uncached: Collection[str],
        nodes: dict[str, list[RegistryNode]],
        report: Progress,
        watch: bool,
    ) -> tuple[dict[str, list[str]], dict[str, int]]:
        """List each parent (watched): the children whose data must be read (the cache gives
        the others, added to ``nodes``), and each parent's child version."""
        listings: dict[str, list[str]] = {}
        versions: dict[str, int] = {}
        for parent, result in self._pipelined(
            parents,
            lambda p: self._client.get_children_async(
                p, watch=self._watched if watch else None, include_data=True
            ),
        ):
            report("listing paths", len(listings), len(parents))
            if isinstance(result, NoNodeError):
                listings[parent] = []
                self._cache.drop(parent)
                if watch and self.owner_of(parent) is not None:  # created since: read again
                    self._on_change(parent)
            elif isinstance(result, NoAuthError):
                listings[parent] = []
                self.denied.add(parent)
            elif isinstance(result, Exception):
                raise result
            else:
                children, stat = result
                versions[parent] = stat.cversion
                self._known_parents.add(parent)  # it exists: creating under it needs no check
                listings[parent] = (
                    list(children)
                    if parent in uncached
                    else self._cache.unknown(parent, children, stat.cversion, nodes[parent])
                )
        return listings, versions

    def changed_since_read(self, parents: Iterable[str]) -> set[str]:
        """Of ``parents``, those whose children changed since the last read, those never read
        (or read uncached) and those that cannot be checked now: one pipelined ``exists``
        each, no listing, no data."""
        parents = list(parents)
        changed = set()
        for parent, result in self._pipelined(parents, self._client.exists_async):
            known = self._cache.version(parent)
            if isinstance(result, Exception) or result is None or result.cversion != known:
                changed.add(parent)
        return changed

    def apply_all(self, transactions: list[Transaction]) -> list[WriteResult]:
        """Run each transaction as one ZooKeeper ``multi`` (all its ops or none), pipelined."""
        return self.start(transactions)()

    def release(self, path: str) -> None:
        """Delete ``path`` (this session's lease it gives up); absent already is fine."""
        self.apply_all([Transaction((Delete(path, -1),))])

    def start(
        self, transactions: list[Transaction], batched: bool = True
    ) -> Callable[[], list[WriteResult]]:
        """Send the transactions and return at once: calling the result waits for each
        transaction's outcome, in order. The caller may read and plan other paths in between.

        Several transactions travel in one ``multi`` (all of them or none): a storm of
        rewrites costs a fraction of the requests. If a batch fails, its transactions are
        sent again one by one, so each gets its own outcome.
        """
        started = []
        for batch in _batches(transactions) if batched else ([t] for t in transactions):
            try:
                started.append((batch, self._commit(batch)))
            except Exception as exc:  # returned, not raised: the outcome reports it
                started.append((batch, _Failed(exc)))
        return lambda: self._finish(started)

    def _finish(self, started: list[tuple[list[Transaction], Any]]) -> list[WriteResult]:
        results: list[WriteResult] = []
        for batch, result in self._drain(started):
            cause = _cause(result)
            outcome = _outcome(cause)
            if isinstance(cause, NoNodeError):
                self._known_parents.clear()  # a parent may have been deleted: ensure it again
            if outcome.outcome in (Outcome.APPLIED, Outcome.UNKNOWN) or len(batch) == 1:
                results += [outcome] * len(batch)
            else:
                results += self.start(batch, batched=False)()
        transactions = [t for batch, _ in started for t in batch]
        for transaction, outcome in zip(transactions, results, strict=True):
            if outcome.ok:
                self._cache.applied(transaction, self.session_id)
        return results

    def _commit(self, transactions: list[Transaction]) -> Any:
        ops = [op for transaction in transactions for op in transaction.ops]
        for op in ops:
            if isinstance(op, Create):
                self._ensure_parent(op.path)
        request = self._client.transaction()
        for op in ops:
            match op:
                case Create(path=path, data=data, persistent=persistent):
                    request.create(path, data, acl=self._acl, ephemeral=not persistent)
                case SetData(path=path, data=data, version=version):
                    request.set_data(path, data, version)
                case Delete(path=path, version=version):
                    request.delete(path, version=version)
                case Check(path=path, version=version):
                    request.check(path, version)
        return request.commit_async()

    def _ensure_parent(self, path: str) -> None:
        parent = path.rpartition("/")[0]
        if parent and parent not in self._known_parents:
            # Mirror paths and the lease's parent may not exist yet; they are persistent.
            self._wait(self._client.ensure_path_async(parent, acl=self._acl))
            self._known_parents.add(parent)

    def _pipelined(self, keys: list[K], start: Callable[[K], Any]) -> Iterable[tuple[K, Any]]:
        """Issue async requests with at most _PIPELINE_DEPTH outstanding; yield results in
        order. A request that cannot even be issued yields its exception as its result."""
        pending: list[tuple[K, Any]] = []
        for key in keys:
            try:
                pending.append((key, start(key)))
            except Exception as exc:  # returned, not raised: the caller decides per error
                pending.append((key, _Failed(exc)))
            if len(pending) >= _PIPELINE_DEPTH:
                yield from self._drain(pending[: _PIPELINE_DEPTH // 2])
                del pending[: _PIPELINE_DEPTH // 2]
        yield from self._drain(pending)

    def _drain(self, pending: list[tuple[K, Any]]) -> Iterable[tuple[K, Any]]:
        for key, async_result in pending:
            try:
                yield key, self._wait(async_result)
            except Interrupted:
                raise
            except Exception as exc:  # returned, not raised: the caller decides per error
                yield key, exc

    def _wait(self, async_result: Any) -> Any:
        """The request's result, or its exception raised; Interrupted once stopping."""
        while True:
            if self._stopping.is_set():
                raise Interrupted
            try:
                return async_result.get(timeout=_WAIT_SLICE)
            except self._client.handler.timeout_exception:
                continue

    def _watched(self, event: WatchedEvent) -> None:
        # Kazoo also fires every watch with type NONE when a connection drops (and forgets
        # them); the reconnect marks everything dirty, and re-reading sets them again.
        if event.type == EventType.CHANGED and event.path:
            self._on_change(event.path.rpartition("/")[0])  # a node's data: re-read its path
        elif event.type != EventType.NONE and event.path:
            self._on_change(event.path)

    def _state_changed(self, state: str) -> None:
        mapping = {
            KazooState.CONNECTED: Connection.CONNECTED,
            KazooState.SUSPENDED: Connection.SUSPENDED,
            KazooState.LOST: Connection.LOST,
        }
        self._on_connection(mapping[state])


class _MarkingHandler(SequentialThreadingHandler):  # type: ignore[misc]
    """Kazoo's threading handler, marking each socket before it connects (a redirect is
    decided on the first packet). The sidecar does not speak TLS to ZooKeeper."""

    def __init__(self, mark: Callable[[socket.socket], None]) -> None:
        super().__init__()
        self._mark = mark

    def create_connection(
        self, address: tuple[str, int], timeout: float | None = None, **options: Any
    ) -> socket.socket:
        family, kind, proto, _, target = socket.getaddrinfo(*address, type=socket.SOCK_STREAM)[0]
        connection = socket.socket(family, kind, proto)
        try:
            self._mark(connection)
            connection.settimeout(timeout)
            connection.connect(target)
        except OSError:
            connection.close()
            raise
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection


class _Failed:
    """A request that failed before it was sent; ``get`` raises its error."""

    def __init__(self, error: Exception) -> None:
        self._error = error

    def get(self, timeout: float | None = None) -> Any:
        raise self._error


def _batches(transactions: list[Transaction]) -> Iterable[list[Transaction]]:
    batch: list[Transaction] = []
    size = 0
    for transaction in transactions:
        if batch and size + len(transaction.ops) > _BATCH_OPS:
            yield batch
            batch, size = [], 0
        batch.append(transaction)
        size += len(transaction.ops)
    if batch:
        yield batch


def _cause(result: Any) -> Exception | None:
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


def _outcome(cause: Exception | None) -> WriteResult:
    if cause is None:
        return WriteResult(Outcome.APPLIED)
    if isinstance(cause, NoAuthError):
        outcome = Outcome.DENIED
    elif isinstance(cause, _UNKNOWN):
        outcome = Outcome.UNKNOWN
    else:
        outcome = Outcome.FAILED
    return WriteResult(outcome, type(cause).__name__)
