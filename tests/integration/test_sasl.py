"""SASL DIGEST-MD5 to a real ZooKeeper whose JAAS `DigestLoginModule` knows the sidecar and
which refuses every session that did not authenticate (`enforce.auth.schemes=sasl`): the
credentials come from a file, are never printed, and what the sidecar creates belongs to its
SASL identity."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError

from sidecar.scope import LEASE_ROOT
from testbed.polling import wait_until
from testbed.sidecar_process import SidecarProcess
from testbed.zookeeper import ZooKeeperServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]
USER, PASSWORD = "sidecar", "s1decar-Pw"


@pytest.fixture(scope="module")
def sasl_zookeeper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperServer]:
    """A server that takes only sessions authenticated with SASL."""
    work = tmp_path_factory.mktemp("sasl-zookeeper")
    with ZooKeeperServer(work, sasl_users={USER: PASSWORD, "reader": "r3ader"}) as server:
        yield server


def sasl_client(server: ZooKeeperServer, user: str, password: str) -> KazooClient:
    options = {"mechanism": "DIGEST-MD5", "username": user, "password": password}
    client = KazooClient(hosts=server.connect_string, timeout=10.0, sasl_options=options)
    client.start(timeout=15)
    return client


def test_the_sidecar_authenticates_with_sasl_and_owns_what_it_creates(
    sasl_zookeeper: ZooKeeperServer,
    tmp_path: Path,
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    """With `--zookeeper-sasl-file` the sidecar's session authenticates (the server refuses
    any other) and does its work; its nodes carry the ACL `sasl:<user>` with every
    permission, so another SASL user cannot even read them; the password is never in its
    logs."""
    secret = tmp_path / "sasl"
    secret.write_text(f"{USER}:{PASSWORD}\n")
    sidecar = start_sidecar(
        "--zookeeper-sasl-file", str(secret), connect=sasl_zookeeper.connect_string
    )
    own, other = (
        sasl_client(sasl_zookeeper, USER, PASSWORD),
        sasl_client(sasl_zookeeper, "reader", "r3ader"),
    )
    try:
        leases = wait_until(lambda: own.get_children(LEASE_ROOT), 10, message="no lease")
        acl, _ = own.get_acls(f"{LEASE_ROOT}/{leases[0]}")
        assert [(e.id.scheme, e.id.id, e.perms) for e in acl] == [("sasl", USER, 31)]
        with pytest.raises(NoAuthError):
            other.get_children(LEASE_ROOT)
    finally:
        for client in (own, other):
            client.stop()
            client.close()
    assert PASSWORD not in sidecar.log_path.read_text()
