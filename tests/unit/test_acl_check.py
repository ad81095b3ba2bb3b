"""Shared ensembles, said plainly: the sidecar checks who else may change its coordination
parents and says so once, with the command that closes them; its own credentials' ACL is
not reported. On in-memory twins; tests/integration/test_fleet_trust.py on ZooKeeper."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from sidecar.acls import digest_identity, fix_command, identities, others_may_change
from sidecar.loop.acl_check import TOP
from sidecar.loop.dirty import Work
from sidecar.model import AclEntry
from tests.unit.harness import Harness

pytestmark = pytest.mark.timeout(30)
OWN = digest_identity("sidecar:secret")


def test_open_parents_are_reported_once_with_the_fix_and_counted() -> None:
    """Without credentials every parent the sidecar created is open to anyone: one line
    names them and the command that closes them, the gauge counts them, and the next resync
    says nothing new."""
    twin = Harness()
    with capture_logs() as logs:
        twin.start()
        twin.run(Work(local=True))
    [said] = [e for e in logs if e["event"] == "coordination_open"]
    assert TOP in said["nodes"]
    assert said["writable_by"] == ["world:anyone:cdrwa"]
    assert said["fix"].startswith("give the sidecars --zookeeper-auth")
    assert twin.components.metrics.coordination_open._value.get() == len(said["nodes"])


def test_parents_only_the_sidecars_credentials_may_change_are_not_reported() -> None:
    """Parents whose ACL gives changes to the sidecar's own digest id only (and reads to
    anyone) are closed: nothing is said; one someone opens later is said then."""
    twin = Harness(options={"zookeeper_auth": "sidecar:secret"})
    closed = [AclEntry("digest", OWN, 31), AclEntry("world", "anyone", 1)]
    twin.start()
    for path in twin.components.acl_check._paths:
        twin.registry.tree.acls[path] = closed
    with capture_logs() as logs:
        twin.run(Work(local=True))
    assert [e["event"] for e in logs if e["event"] == "coordination_closed"] == [
        "coordination_closed"
    ]
    twin.registry.tree.acls[TOP] = [AclEntry("world", "anyone", 31)]
    with capture_logs() as logs:
        twin.run(Work(local=True))
    [said] = [e for e in logs if e["event"] == "coordination_open"]
    assert said["nodes"] == [TOP]
    assert (
        said["fix"] == f"setAcl -R {TOP} digest:{OWN}:cdrwa (zkCli.sh, authenticated as that user)"
    )


def test_whose_changes_count() -> None:
    """Reads are anyone's; a change right of any other id counts; the sidecar's own does not."""
    acl = [
        AclEntry("world", "anyone", 1), AclEntry("digest", OWN, 31),
        AclEntry("ip", "10.0.0.0/8", 2), AclEntry("digest", "other:xyz", 8),
    ]  # fmt: skip
    assert [str(e) for e in others_may_change(acl, {("digest", OWN)})] == [
        "ip:10.0.0.0/8:w",
        "digest:other:xyz:d",
    ]
    assert len(others_may_change(acl, ())) == 3


def test_a_sasl_identity_is_the_sidecars_own() -> None:
    """With SASL credentials, entries of `sasl:<user>` are the sidecar's (what CREATOR_ALL
    becomes for a SASL session); the fix names that identity."""
    own = identities(None, "sidecar:secret")
    acl = [AclEntry("sasl", "sidecar", 31), AclEntry("sasl", "other", 31)]
    assert [str(e) for e in others_may_change(acl, own)] == ["sasl:other:cdrwa"]
    assert "sasl:sidecar:cdrwa" in fix_command("/dubbo-nat-sidecar", own)
