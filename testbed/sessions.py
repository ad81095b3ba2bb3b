"""ZooKeeper sessions as tests need them: another client's session expired on demand, a client
connecting from a chosen address (a provider on another host)."""

from __future__ import annotations

import socket
import time

from kazoo.client import KazooClient  # type: ignore[import-untyped,unused-ignore]
from kazoo.handlers.threading import (  # type: ignore[import-untyped,unused-ignore]
    SequentialThreadingHandler,
)

from testbed.polling import wait_until


def expire_session(
    connect_string: str, session_id: int, password: bytes, timeout: float = 15.0
) -> None:
    """Force-expire someone else's session, the way ZooKeeper's own tests do.

    A second client attaches to the session with its ``(id, password)`` and closes it; the
    server then drops the owner's connection and deletes its ephemeral nodes, and the owner
    sees ``SESSION_EXPIRED`` when it reconnects. Returns once re-attaching with the same
    credentials yields a fresh session id, i.e. the server has really forgotten the session.
    """
    deadline = time.monotonic() + timeout

    def attach() -> int:
        client = KazooClient(
            hosts=connect_string,
            client_id=(session_id, password),
            timeout=10.0,
        )
        try:
            client.start(timeout=max(1.0, deadline - time.monotonic()))
            attached: int = client.client_id[0]
        finally:
            # Closing is the point: if we got the original session, this expires it.
            client.stop()
            client.close()
        return attached

    attach()
    wait_until(
        lambda: attach() != session_id,
        max(0.0, deadline - time.monotonic()),
        message=f"session 0x{session_id:x} still alive after closing it",
    )


class _SourceBoundHandler(SequentialThreadingHandler):  # type: ignore[misc]
    """Kazoo's threading handler, connecting from a chosen local address."""

    def __init__(self, source_address: str) -> None:
        super().__init__()
        self._source_address = source_address

    def create_connection(
        self, address: tuple[str, int], timeout: float | None = None, **_: object
    ) -> socket.socket:
        connection = socket.create_connection(
            address, timeout, source_address=(self._source_address, 0)
        )
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection


def client_from(connect_string: str, source_address: str, timeout: float = 10.0) -> KazooClient:
    """A started ZooKeeper client whose connections come from ``source_address``.

    With ``127.0.0.2`` it plays a provider on another host: the servers report that address
    for its session, which is none of this host's interface addresses.
    """
    client = KazooClient(
        hosts=connect_string, timeout=timeout, handler=_SourceBoundHandler(source_address)
    )
    client.start(timeout=15)
    return client
