"""Who else may write a node, from its ACL (pure): the sidecar's coordination nodes
(leases, records, the fleet's members, ballots and work) are input it checks, but one that
anyone may write is worth saying so, with the command that closes it."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Collection, Iterable

from sidecar.model import ADMIN, CREATE, DELETE, WRITE, AclEntry

# ZooKeeper's permission bits that change a node or its children.
_CHANGES = WRITE | CREATE | DELETE | ADMIN


def digest_identity(credentials: str) -> str:
    """The ``digest`` id of ``user:password`` as ZooKeeper stores it in ACLs: the user and
    the base64 of the SHA-1 of the credentials (the password itself is not in it)."""
    user = credentials.partition(":")[0]
    hashed = hashlib.sha1(credentials.encode()).digest()
    return f"{user}:{base64.b64encode(hashed).decode()}"


def identities(digest: str | None, sasl: str | None) -> frozenset[tuple[str, str]]:
    """The (scheme, id) pairs ZooKeeper gives the nodes the sidecar creates (CREATOR_ALL
    becomes one entry per identity the session authenticated): ``digest`` and ``sasl`` are
    ``user:password`` credentials (SASL's id is the user name)."""
    found = set()
    if digest:
        found.add(("digest", digest_identity(digest)))
    if sasl:
        found.add(("sasl", sasl.partition(":")[0]))
    return frozenset(found)


def others_may_change(acl: Iterable[AclEntry], own: Collection[tuple[str, str]]) -> list[AclEntry]:
    """The entries that let someone other than the sidecar's identities ``own`` (empty: it
    has none) change the node or its children."""
    return [
        entry for entry in acl if entry.perms & _CHANGES and (entry.scheme, entry.id) not in own
    ]


def fix_command(path: str, own: Collection[tuple[str, str]]) -> str:
    """The ZooKeeper CLI command that leaves ``path`` (and what is under it) to the sidecar's
    identities alone."""
    if not own:
        return (
            "give the sidecars --zookeeper-auth, then "
            f"setAcl -R {path} digest:USER:HASH:cdrwa (zkCli.sh)"
        )
    entries = ",".join(f"{scheme}:{id_}:cdrwa" for scheme, id_ in sorted(own))
    return f"setAcl -R {path} {entries} (zkCli.sh, authenticated as that user)"
