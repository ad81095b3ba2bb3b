"""Where ZooKeeper is read, watched and written: the only module that calls kazoo.

Reads set one-shot watches whose callback only reports the path; writes are ``multi``
transactions built by the planner. Everything kazoo returns is turned into typed values here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import NoAuthError, NodeExistsError, NoNodeError, RolledBackError
from kazoo.protocol.states import EventType, WatchedEvent
from kazoo.retry import KazooRetry

from sidecar.model import Check, Create, Delete, RegistryNode, Transaction

# Pipelined reads: enough in flight to hide round trips, few enough to bound memory.
_PIPELINE_DEPTH = 500
K = TypeVar("K")


class Connection(Enum):
    CONNECTED = "connected"
    SUSPENDED = "suspended"
    LOST = "lost"


@dataclass(frozen=True)
class Outcome:
    """How a transaction went: ``error`` names the first failing operation's problem."""

    ok: bool
    error: str = ""
    denied: bool = False


class ZooKeeperRegistry:
    """A ZooKeeper session plus the reads and writes the sidecar needs."""

    def __init__(
        self,
        hosts: str,
        session_timeout: float,
        on_change: Callable[[str], None],
        on_connection: Callable[[Connection], None],
        resume: tuple[int, bytes] | None = None,
    ) -> None:
        """``resume``: the (session id, password) of a session to continue, if still alive."""
        self._on_change = on_change
        self._on_connection = on_connection
        self._known_parents: set[str] = set()
        self._client = KazooClient(
            hosts=hosts,
            timeout=session_timeout,
            client_id=resume,
            connection_retry=KazooRetry(max_tries=-1, max_delay=5),
            command_retry=KazooRetry(max_tries=3, max_delay=2),
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

    def close(self) -> None:
        """Close the session: every ephemeral node it owns disappears at once."""
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

    def hold_lease(self, path: str, data: bytes) -> int:
        """Make this session own the ephemeral node ``path``, taking it over if another session
        holds it; return that session's id (0 if there was none). The lease is watched."""
        self._client.ensure_path(path.rpartition("/")[0])
        previous = 0
        try:
            self._client.create(path, data, ephemeral=True)
        except NodeExistsError:
            stat = self._client.exists(path)
            if stat is not None and stat.ephemeralOwner != self.session_id:
                request = self._client.transaction()
                request.delete(path, version=stat.version)
                request.create(path, data, ephemeral=True)
                failure = _outcome(request.commit())
                if not failure.ok:
                    raise ConnectionError(f"could not take over {path}: {failure.error}") from None
                previous = int(stat.ephemeralOwner)
        self._client.exists(path, watch=self._watched)
        return previous

    def owner_of(self, path: str) -> int | None:
        """The session owning the ephemeral node ``path`` (None if absent); watched."""
        stat = self._client.exists(path, watch=self._watched)
        return int(stat.ephemeralOwner) if stat is not None else None

    def list_children(self, path: str) -> list[str]:
        """Children of ``path``, watched; none, and a watch for its creation, if it is absent."""
        try:
            return list(self._client.get_children(path, watch=self._watched))
        except NoNodeError:
            if self._client.exists(path, watch=self._watched) is not None:
                self._on_change(path)  # created since the listing: read it again
            return []

    def providers_paths(self, root: str) -> list[str]:
        """The ``providers`` path of every interface under a registry root (watching the root)."""
        return [f"{root}/{name}/providers" for name in self.list_children(root)]

    def read_providers(self, parents: Iterable[str]) -> dict[str, list[RegistryNode]]:
        """Every node under each ``providers`` path, read pipelined; watches set on each parent.

        A parent that does not exist yet maps to an empty list and gets an existence watch.
        """
        parents = list(parents)
        listings: dict[str, list[str]] = {}
        for parent, result in self._pipelined(
            parents, lambda p: self._client.get_children_async(p, watch=self._watched)
        ):
            if isinstance(result, NoNodeError):
                listings[parent] = []
                if self._client.exists(parent, watch=self._watched) is not None:
                    self._on_change(parent)  # created since the listing: read it again
            elif isinstance(result, Exception):
                raise result
            else:
                listings[parent] = list(result)
        paths = [f"{parent}/{name}" for parent in parents for name in listings[parent]]
        nodes: dict[str, list[RegistryNode]] = {parent: [] for parent in parents}
        for path, result in self._pipelined(paths, self._client.get_async):
            if isinstance(result, NoNodeError):
                continue  # deleted since the listing; its parent's watch has fired
            if isinstance(result, Exception):
                raise result
            data, stat = result
            parent, _, name = path.rpartition("/")
            nodes[parent].append(
                RegistryNode(parent, name, data or b"", stat.ephemeralOwner, stat.version)
            )
        return nodes

    def apply_all(self, transactions: list[Transaction]) -> list[Outcome]:
        """Run each transaction as one ZooKeeper ``multi`` (all its ops or none), pipelined."""
        started = self._pipelined(
            list(range(len(transactions))), lambda i: self._commit(transactions[i])
        )
        outcomes = [_outcome(result) for _, result in started]
        if any(o.error == "NoNodeError" for o in outcomes):
            self._known_parents.clear()  # a parent may have been deleted: ensure it again
        return outcomes

    def _commit(self, transaction: Transaction) -> Any:
        for op in transaction.ops:
            parent = op.path.rpartition("/")[0]
            if isinstance(op, Create) and parent not in self._known_parents:
                # Mirror paths may not exist yet; they are persistent, like Dubbo's own.
                self._client.ensure_path(parent)
                self._known_parents.add(parent)
        request = self._client.transaction()
        for op in transaction.ops:
            match op:
                case Create(path=path, data=data):
                    request.create(path, data, ephemeral=True)
                case Delete(path=path, version=version):
                    request.delete(path, version=version)
                case Check(path=path, version=version):
                    request.check(path, version)
        return request.commit_async()

    def _pipelined(self, keys: list[K], start: Callable[[K], Any]) -> Iterable[tuple[K, Any]]:
        """Issue async requests with at most _PIPELINE_DEPTH outstanding; yield results in order."""
        pending: list[tuple[K, Any]] = []
        for key in keys:
            pending.append((key, start(key)))
            if len(pending) >= _PIPELINE_DEPTH:
                yield from _drain(pending[: _PIPELINE_DEPTH // 2])
                del pending[: _PIPELINE_DEPTH // 2]
        yield from _drain(pending)

    def _watched(self, event: WatchedEvent) -> None:
        # Kazoo also fires watches with type NONE when a connection drops; the state
        # listener handles that case with a full resync.
        if event.type != EventType.NONE and event.path:
            self._on_change(event.path)

    def _state_changed(self, state: str) -> None:
        mapping = {
            KazooState.CONNECTED: Connection.CONNECTED,
            KazooState.SUSPENDED: Connection.SUSPENDED,
            KazooState.LOST: Connection.LOST,
        }
        self._on_connection(mapping[state])


def _outcome(result: Any) -> Outcome:
    if isinstance(result, Exception):
        return Outcome(False, type(result).__name__, denied=isinstance(result, NoAuthError))
    failures = [r for r in result if isinstance(r, Exception)]
    if not failures:
        return Outcome(True)
    cause = next((r for r in failures if not isinstance(r, RolledBackError)), failures[0])
    return Outcome(False, type(cause).__name__, denied=isinstance(cause, NoAuthError))


def _drain(pending: list[tuple[K, Any]]) -> Iterable[tuple[K, Any]]:
    for key, async_result in pending:
        try:
            yield key, async_result.get()
        except Exception as exc:  # returned, not raised: the caller decides per error type
            yield key, exc
