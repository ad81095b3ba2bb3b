"""Who else may write the sidecar's coordination parents (its leases, records and, in a fleet,
members, ballots and work), checked at start and at each resync and said plainly: one line
when that changes, a gauge, and the command that closes them. What is written there is
never proof of anything (see docs/architecture.md), but it can cost work and hide a host's own.
Owned by the loop thread."""

from __future__ import annotations

from collections.abc import Callable

from sidecar.acls import fix_command, identities, others_may_change
from sidecar.fleet.indexer import ELECTION, FLEET_ROOT, MEMBERS, WORK
from sidecar.model import AclEntry
from sidecar.protocols import Reads
from sidecar.records import RECORDS_ROOT, records_parent
from sidecar.report.events import Events
from sidecar.scope import LEASE_ROOT

TOP = LEASE_ROOT.rpartition("/")[0]  # /dubbo-nat-sidecar


class AclCheck:
    """The coordination parents others may change, as last checked."""

    def __init__(
        self,
        registry: Reads,
        events: Events,
        count: Callable[[int], None],
        engine: str,
        fleet: bool,
        credentials: str | None,
        sasl: str | None = None,
    ) -> None:
        """``credentials``, ``sasl``: ``user:password`` of --zookeeper-auth and of
        --zookeeper-sasl (None: none)."""
        self._registry = registry
        self._events = events
        self._count = count
        self._own = identities(credentials, sasl)
        self._paths = [TOP, LEASE_ROOT, f"{LEASE_ROOT}/{engine}", RECORDS_ROOT,
                       records_parent(engine)]  # fmt: skip
        if fleet:
            self._paths += [FLEET_ROOT, MEMBERS, ELECTION, WORK]
        self.open: dict[str, list[AclEntry]] = {}

    def check(self) -> None:
        """Read the parents' ACLs again; say so if who may change them changed."""
        acls = self._registry.acls(self._paths)
        found = {
            path: others
            for path, acl in acls.items()
            if acl is not None and (others := others_may_change(acl, self._own))
        }
        if found != self.open and found:
            self._events.warning(
                "coordination_open", nodes=sorted(found),
                writable_by=sorted({str(e) for entries in found.values() for e in entries}),
                fix=fix_command(TOP, self._own),
            )  # fmt: skip
        elif found != self.open:
            self._events.info("coordination_closed")
        self.open = found
        self._count(len(found))
