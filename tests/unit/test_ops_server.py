"""The operations listener stays bounded whatever its clients do, and an address it cannot
listen on is a configuration error naming the setting."""

from __future__ import annotations

import contextlib
import socket
import threading
import urllib.request
from collections.abc import Iterator

import pytest

from sidecar.cli import main
from sidecar.config import ConfigError
from sidecar.ops.metrics import Metrics
from sidecar.ops.server import OpsServer
from testbed.polling import wait_until


@pytest.fixture
def server() -> Iterator[OpsServer]:
    ops = OpsServer("127.0.0.1", 0, Metrics(), lambda: ["not connected to ZooKeeper"])
    ops.start()
    try:
        yield ops
    finally:
        ops.stop()


def get(ops: OpsServer, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ops.port}{path}", timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_the_three_endpoints_answer(server: OpsServer) -> None:
    """/healthz is ok, /readyz says why not ready (503), /metrics is Prometheus text."""
    assert get(server, "/healthz") == (200, b"ok\n")
    status, body = get(server, "/readyz")
    assert (status, body) == (503, b'{"ready": false, "reasons": ["not connected to ZooKeeper"]}\n')
    status, body = get(server, "/metrics")
    assert status == 200
    assert b"dubbo_sidecar_lease_held" in body
    assert get(server, "/nothing")[0] == 404


def test_half_sent_requests_hold_no_thread_and_do_not_block_probes(server: OpsServer) -> None:
    """500 connections that never finish their request (they held 502 threads before): the
    listener's threads stay few, /healthz still answers at once, and the half-sent
    connections are dropped after the read timeout."""
    before = threading.active_count()
    with contextlib.ExitStack() as stack:
        stalled = []
        for _ in range(500):
            conn = stack.enter_context(socket.create_connection(("127.0.0.1", server.port)))
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            stalled.append(conn)
        assert get(server, "/healthz") == (200, b"ok\n")
        assert threading.active_count() <= before + 4
        for conn in stalled[-5:]:
            conn.settimeout(15)
            assert conn.recv(1) == b""  # closed by the server, not answered
        wait_until(lambda: get(server, "/healthz") == (200, b"ok\n"), 5)


def test_an_address_that_cannot_be_listened_on_names_the_setting(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--listen 10.255.255.1:9477` (no such local address): a configuration error naming
    `--listen`, exit 2 (it exited 1 with a bare [Errno 99] before)."""
    with pytest.raises(ConfigError) as raised:
        OpsServer("10.255.255.1", 9477, Metrics(), list)
    assert str(raised.value).startswith("cannot listen on 10.255.255.1:9477: ")
    argv = ["run", "--listen", "10.255.255.1:9477", "--zookeeper", "127.0.0.1:1"]
    argv += ["--docker-url", "none", "--static-ports", "20880:30880"]
    argv += ["--advertise-host", "10.0.0.1", "--state-file", ""]
    assert main(argv) == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last == (
        "dubbo-sidecar: --listen: cannot listen on 10.255.255.1:9477: "
        "Cannot assign requested address"
    )
