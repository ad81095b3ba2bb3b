"""Who else may write a node, from its ACL (pure): the sidecar's coordination nodes
(leases, records, the fleet's members, ballots and work) are input it checks, but one that
anyone may write is worth saying so, with the command that closes it."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable

from sidecar.model import ADMIN, CREATE, DELETE, WRITE, AclEntry

# ZooKeeper's permission bits that change a node or its children.
_CHANGES = WRITE | CREATE | DELETE | ADMIN


def digest_identity(credentials: str) -> str:
    """The ``digest`` id of ``user:password`` as ZooKeeper stores it in ACLs: the user and
    the base64 of the SHA-1 of the credentials (the password itself is not in it)."""
    user = credentials.partition(":")[0]
    hashed = hashlib.sha1(credentials.encode()).digest()
    return f"{user}:{base64.b64encode(hashed).decode()}"


def others_may_change(acl: Iterable[AclEntry], own: str | None) -> list[AclEntry]:
    """The entries that let someone other than ``own`` (the sidecar's digest id; None: it has
    none) change the node or its children."""
    return [
        entry
        for entry in acl
        if entry.perms & _CHANGES and not (entry.scheme == "digest" and entry.id == own)
    ]


def fix_command(path: str, own: str | None) -> str:
    """The ZooKeeper CLI command that leaves ``path`` (and what is under it) to the sidecar's
    credentials alone."""
    if own is None:
        return (
            "give the sidecars --zookeeper-auth, then "
            f"setAcl -R {path} digest:USER:HASH:cdrwa (zkCli.sh)"
        )
    return f"setAcl -R {path} digest:{own}:cdrwa (zkCli.sh, authenticated as that user)"
