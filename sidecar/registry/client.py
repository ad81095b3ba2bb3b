"""The ZooKeeper session under the registry: connecting, the session's identity and health,
waiting for requests in short slices (a stop is honoured even while ZooKeeper does not
answer), pipelining, and the watches' callback, which only reports the path."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from kazoo.client import KazooClient, KazooState
from kazoo.protocol.states import EventType, WatchedEvent
from kazoo.retry import KazooRetry
from kazoo.security import CREATOR_ALL_ACL, OPEN_ACL_UNSAFE

from sidecar.model import Connection
from sidecar.registry.cache import ReadCache
from sidecar.registry.connection import PollingHandler, held, rearm, send_together
from sidecar.registry.internals import fast_path_allowed
from sidecar.registry.outcomes import JUTE_MAXBUFFER, Drops, Failed, Interrupted, acl_size
from sidecar.tls import ClientTls

# Pipelined reads: enough in flight to hide round trips, few enough to bound memory.
_PIPELINE_DEPTH = 500
_WAIT_SLICE = 0.25
K = TypeVar("K")


class Session:
    """A ZooKeeper session; ZooKeeperRegistry adds the reads and writes."""

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
        jute_maxbuffer: int = JUTE_MAXBUFFER,
        tls: ClientTls | None = None,
        sasl: str | None = None,
    ) -> None:
        """``resume``: the (session id, password) of a session to continue, if still alive;
        ``stopping``: set when requests should no longer be waited for; ``digest``:
        ``user:password`` credentials, which also make created nodes CREATOR_ALL; ``mark``:
        applied to each connection (so that the proxy's capture lets the sidecar's own pass);
        ``jute_maxbuffer``: the largest request the servers take, bytes; ``tls``: what each
        connection to the servers is secured with (None: plaintext); ``sasl``: ``user:password``
        authenticated with SASL DIGEST-MD5, which also make created nodes CREATOR_ALL (the
        server turns that into ``sasl:<user>``)."""
        self._on_change = on_change
        self._on_connection = on_connection
        self._stopping = stopping or threading.Event()
        self._known_parents: set[str] = set()
        self._absent: set[str] = set()  # nodes watched for their creation
        self._acl = CREATOR_ALL_ACL if digest or sasl else None
        self._acl_size = acl_size(self._acl or OPEN_ACL_UNSAFE)
        self._max_request = jute_maxbuffer
        self._drops = Drops()
        self.denied: set[str] = set()  # what the last read was not allowed to read
        self._cache = ReadCache()
        # The session and the (data, child) watches held when the connection last dropped.
        self._held: tuple[int, set[str], set[str]] | None = None
        self._handler = PollingHandler(mark, tls)
        self._client = KazooClient(
            hosts=hosts,
            timeout=session_timeout,
            client_id=resume,
            auth_data=[("digest", digest)] if digest else None,
            connection_retry=KazooRetry(max_tries=-1, max_delay=5),
            command_retry=KazooRetry(max_tries=3, max_delay=2),
            handler=self._handler,
            sasl_options=_sasl_options(sasl) if sasl else None,
        )
        # With kazoo's private internals as tested: requests sent together, watches set again
        # on a resumed session. Else kazoo's own loop, and a full re-read after a reconnect.
        self.fast_path = fast_path_allowed()
        if self.fast_path:
            send_together(self._client)
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
        return self._handler.connection_alive

    def take_denied(self) -> set[str]:
        """The paths reads were not allowed to read since the last call."""
        denied, self.denied = self.denied, set()
        return denied

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
                pending.append((key, Failed(exc)))
            if len(pending) >= _PIPELINE_DEPTH:
                yield from self._drain(pending[: _PIPELINE_DEPTH // 2])
                del pending[: _PIPELINE_DEPTH // 2]
        yield from self._drain(pending)

    def _drain(self, pending: list[tuple[K, Any]]) -> Iterable[tuple[K, Any]]:
        # A session's replies come in request order: once the last is in, so are the others.
        # Waiting for it alone wakes this thread once per batch, not once per reply (each
        # wake-up is a thread switch, what a pass of many small reads mostly cost).
        if pending:
            try:
                self._wait(pending[-1][1])
            except Interrupted:
                raise
            except Exception:  # reported below, in its turn
                pass
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
        if event.type == EventType.NONE or not event.path:
            return
        if event.path in self._absent:
            # Watched while absent: what happened is the node's own (a watch set again after
            # a reconnect reports a node created meanwhile as a data change).
            self._absent.discard(event.path)
            self._on_change(event.path)
        elif event.type == EventType.CHANGED:
            self._on_change(event.path.rpartition("/")[0])  # a node's data: re-read its path
        else:
            self._on_change(event.path)

    def _state_changed(self, state: str) -> None:
        """Kazoo's state listener (on its connection thread). A connection that drops keeps
        the session; when it comes back with the same session, the watches held before are set
        again in one request and only what changed meanwhile fires: no re-read of everything."""
        if state == KazooState.SUSPENDED:
            self._held = held(self._client) if self.fast_path else None
            self._on_connection(Connection.SUSPENDED)
        elif state == KazooState.CONNECTED:
            before, self._held = self._held, None
            if before is not None and before[0] == self.session_id:
                rearm(self._client, before[1], before[2], self._watched, self._rearm_failed)
                self._on_connection(Connection.RESUMED)
            else:
                self._on_connection(Connection.CONNECTED)
        else:
            self._held = None
            self._on_connection(Connection.LOST)

    def _rearm_failed(self) -> None:
        # The watches may not be set: behave as after a new session (read everything).
        self._on_connection(Connection.CONNECTED)


def _sasl_options(credentials: str) -> dict[str, str]:
    user, _, password = credentials.partition(":")
    return {"mechanism": "DIGEST-MD5", "username": user, "password": password}
