"""TLS to a real TLS-only ensemble (three servers, Netty, `secureClientPort` only,
`ssl.clientAuth=need`): a provider registering over TLS is rewritten by a sidecar speaking
TLS with its client certificate, through a server failover; certificates rotate on disk
without a restart, and a rotated one that does not verify is refused while the session lives;
where sessions connect from is asked over TLS (`cons`, or the AdminServer over HTTPS)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from docker.models.containers import Container
from kazoo.client import KazooClient

from sidecar.registry.sessions import SessionOrigins
from sidecar.tls import ClientTls, TlsFiles
from testbed.engine import DockerEngine
from testbed.ensemble import ZooKeeperEnsemble
from testbed.polling import wait_until
from testbed.sidecar_process import SidecarProcess
from testbed.tls import ServerTls
from testbed.zookeeper import ZooKeeperServer

from .helpers import children, rewritten_name

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def tls_flags(ca: Path, cert: Path, key: Path) -> list[str]:
    return ["--zookeeper-tls-ca", str(ca), "--zookeeper-tls-cert", str(cert),
            "--zookeeper-tls-key", str(key)]  # fmt: skip


def serving_session(ensemble: ZooKeeperEnsemble, session: int) -> ZooKeeperServer:
    """The member the session is connected to (its `cons`, asked over TLS)."""

    def find() -> ZooKeeperServer | None:
        marker = f"sid=0x{session:x},"
        return next((s for s in ensemble.servers if marker in s.four_letter("cons")), None)

    return wait_until(find, 10, message=f"session 0x{session:x} on no server", retry_on=(OSError,))


def fail_over(
    ensemble: ZooKeeperEnsemble, server: ZooKeeperServer, then: Callable[[], object]
) -> None:
    """Stop ``server``, wait for ``then`` to hold, start it again."""
    server.stop()
    try:
        wait_until(then, 40, message="nothing after the failover", retry_on=(OSError,))
    finally:
        server.start(wait=False)
        ensemble.wait_ready()


def test_a_provider_over_tls_is_rewritten_through_a_failover(
    engine: DockerEngine,
    tls_ensemble: ZooKeeperEnsemble,
    pki: ServerTls,
    tls_registry: KazooClient,
    providers: str,
    start_provider: Callable[..., Container],
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """A provider in a container registering over TLS is rewritten by the sidecar, which
    speaks TLS with its client certificate (hostname checked) and proves where the
    provider's session connects from with `cons` over TLS; when the server it is connected
    to stops, it resumes its session on another and goes on rewriting."""
    gateway = engine.bridge_gateway()
    connect = ",".join(f"{gateway}:{server.port}" for server in tls_ensemble.servers)
    secrets = {str(pki.ca.parent): str(pki.ca.parent)}
    tls_arg = f"{pki.ca},{pki.client.cert},{pki.client.key}"

    def provider() -> Container:
        return start_provider("--tls", tls_arg, connect=connect, volumes=secrets)

    first = provider()
    flags = tls_flags(pki.ca, pki.client.cert, pki.client.key)
    sidecar = start_sidecar(*flags, connect=tls_ensemble.connect_string)
    wait_until(lambda: rewritten_name(first) in children(tls_registry, providers), 15,
               message="registration over TLS was not rewritten")  # fmt: skip
    session = sidecar.session
    fail_over(
        tls_ensemble,
        serving_session(tls_ensemble, session),
        lambda: sidecar.events("zookeeper_resumed"),
    )
    second = provider()
    wait_until(lambda: rewritten_name(second) in children(tls_registry, providers), 20,
               message="no rewrite after the failover")  # fmt: skip
    assert rewritten_name(first) in children(tls_registry, providers)
    assert sidecar.session == session


def test_certificates_rotate_without_a_restart(
    tls_ensemble: ZooKeeperEnsemble, pki: ServerTls, tmp_path: Path,
    start_sidecar: Callable[..., SidecarProcess],
) -> None:  # fmt: skip
    """The client certificate replaced on disk is used by the next connection; one that
    has expired is refused (`zookeeper_tls_refused` naming the setting) while the session
    lives on, and the session is resumed once a good certificate is back."""
    rotated = pki.authority.issue("rotated")
    expired = pki.authority.issue("rotated-expired", days=-1)
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    _replace(pki.client.cert, cert)
    _replace(pki.client.key, key)
    sidecar = start_sidecar(*tls_flags(pki.ca, cert, key), "--session-timeout", "30",
                            connect=tls_ensemble.connect_string)  # fmt: skip
    session = sidecar.session

    _replace(rotated.key, key)
    _replace(rotated.cert, cert)
    fail_over(
        tls_ensemble,
        serving_session(tls_ensemble, session),
        lambda: sidecar.events("zookeeper_tls_reloaded") and sidecar.events("zookeeper_resumed"),
    )

    _replace(expired.key, key)
    _replace(expired.cert, cert)
    server = serving_session(tls_ensemble, session)
    server.stop()
    try:
        refused = sidecar.wait_for_event("zookeeper_tls_refused", timeout=20)
        assert refused["setting"] == "--zookeeper-tls-cert"
        _replace(rotated.key, key)
        _replace(rotated.cert, cert)
        sidecar.wait_for_event("zookeeper_resumed", count=2, timeout=20)
    finally:
        server.start(wait=False)
        tls_ensemble.wait_ready()
    assert sidecar.session == session
    assert not sidecar.events("zookeeper_lost")


def _replace(source: Path, target: Path) -> None:
    """As a secret volume does: a new file moved in place."""
    staged = target.with_name(target.name + ".new")
    shutil.copy(source, staged)
    os.replace(staged, target)


def test_where_sessions_connect_from_is_asked_of_the_adminserver_over_https(
    tmp_path: Path, pki: ServerTls
) -> None:
    """A TLS-only server that does not allow `cons` but serves its AdminServer over HTTPS
    only (`admin.forceHttps`): the sidecar's look-up asks the AdminServer over HTTPS, the
    server verified with the same CA, and finds the session."""
    server = ZooKeeperServer(tmp_path / "zk", admin_port=0, tls=pki, four_letter_words="ruok,srvr")
    with server:
        client = KazooClient(hosts=server.connect_string, timeout=10.0, **pki.kazoo_options())
        client.start(timeout=15)
        try:
            tls = ClientTls(TlsFiles(pki.ca, pki.client.cert, pki.client.key))
            assert server.admin_port is not None
            origins = SessionOrigins(server.connect_string, server.admin_port, tls=tls).fetch()
            assert origins is not None
            assert origins.complete, origins.unanswered
            assert origins.sessions[client.client_id[0]].address == "127.0.0.1"
        finally:
            client.stop()
            client.close()


def test_a_server_not_named_by_its_certificate_is_refused_unless_told(
    tls_ensemble: ZooKeeperEnsemble, pki: ServerTls, start_sidecar: Callable[..., SidecarProcess]
) -> None:
    """The servers' certificates list 127.0.0.1 and localhost: reached as 127.0.0.2 the
    handshake fails (`zookeeper_tls_handshake_failed` says why) and the sidecar does not
    connect; with `--zookeeper-tls-no-verify-hostname` it does, the CA still checked."""
    unnamed = ",".join(f"127.0.0.2:{server.port}" for server in tls_ensemble.servers)
    flags = tls_flags(pki.ca, pki.client.cert, pki.client.key)
    refused = start_sidecar(*flags, connect=unnamed, ready=False)
    failed = refused.wait_for_event("zookeeper_tls_handshake_failed", timeout=20)
    assert failed["server"] == "127.0.0.2"
    assert "mismatch" in failed["problem"]
    assert not refused.events("zookeeper_connected")
    allowed = start_sidecar(*flags, "--zookeeper-tls-no-verify-hostname", connect=unnamed)
    assert allowed.session
