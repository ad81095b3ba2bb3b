"""How the ZooKeeper client's connection thread waits on its sockets (one poll(2) call):
what is ready is reported as kazoo's own select reports it, a hung-up peer counts as
readable (the read then reports the drop), and a closed socket is an error."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.registry.connection import poll_select
from testbed.tls import TestCA


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def test_a_socket_with_nothing_to_read_is_only_writable(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """Nothing sent yet: not readable; a socket with room in its buffer is writable."""
    a, _ = pair
    assert poll_select([a], [a], 0) == ([], [a], [])


def test_a_socket_with_data_is_readable(pair: tuple[socket.socket, socket.socket]) -> None:
    """Once the peer sends, the socket is readable, given as an object or as a descriptor."""
    a, b = pair
    b.send(b"\0")
    assert poll_select([a], [], 1.0) == ([a], [], [])
    assert poll_select([a.fileno()], [], 1.0) == ([a.fileno()], [], [])


def test_only_the_ready_ones_are_returned(pair: tuple[socket.socket, socket.socket]) -> None:
    """Of several sockets waited on, only those ready are returned, in the order given."""
    a, b = pair
    c, d = socket.socketpair()
    try:
        d.send(b"\0")
        assert poll_select([a, c], [], 1.0) == ([c], [], [])
        b.send(b"\0")
        assert poll_select([a, c], [], 1.0) == ([a, c], [], [])
    finally:
        c.close()
        d.close()


def test_nothing_ready_returns_empty_after_the_timeout(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """With nothing to read, the wait ends after its timeout with nothing ready."""
    a, _ = pair
    started = time.monotonic()
    assert poll_select([a], [], 0.05) == ([], [], [])
    assert time.monotonic() - started >= 0.04


def test_a_peer_that_hung_up_makes_the_socket_readable(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """A closed peer wakes the wait: the read that follows finds the end of the stream."""
    a, b = pair
    b.close()
    assert poll_select([a], [], 1.0) == ([a], [], [])
    assert a.recv(1) == b""


def test_a_closed_socket_is_an_error(pair: tuple[socket.socket, socket.socket]) -> None:
    """Waiting on a socket closed meanwhile raises ValueError, as kazoo's own wait does."""
    a, _ = pair
    descriptor = a.fileno()
    a.close()
    with pytest.raises(ValueError, match="fd"):
        poll_select([a], [], 0)
    with pytest.raises(ValueError, match="fd"):
        poll_select([descriptor], [], 0)


def test_a_tls_socket_holding_decrypted_data_is_readable(tmp_path: Path) -> None:
    """Two replies in one TLS record, the first read: the second sits in the TLS layer,
    not in the socket, and must count as readable now (poll alone would wait until the
    server sends again, a heartbeat later)."""
    issued = TestCA(tmp_path).issue("server")
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(issued.cert, issued.key)
    client_side = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_side.check_hostname, client_side.verify_mode = False, ssl.CERT_NONE
    a, b = socket.socketpair()
    accepted: list[ssl.SSLSocket] = []
    handshake = threading.Thread(
        target=lambda: accepted.append(server_side.wrap_socket(b, server_side=True))
    )
    handshake.start()
    client = client_side.wrap_socket(a)
    handshake.join(10)
    try:
        accepted[0].sendall(b"first" + b"second")
        assert poll_select([client], [], 5.0)[0] == [client]
        assert client.recv(5) == b"first"
        assert poll_select([client], [], 0)[0] == [client]
        assert client.recv(6) == b"second"
        assert poll_select([client], [], 0)[0] == []
    finally:
        client.close()
        accepted[0].close()
