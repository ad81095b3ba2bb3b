"""What the planner takes and gives: who plans, what it sees of a path, and its decisions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from urllib.parse import unquote

from sidecar.mapping import Mapped
from sidecar.model import Container, Create, Endpoint, Op, RegistryNode, Transaction
from sidecar.ownership import Marker
from sidecar.plan.parsing import Parses
from sidecar.scope import Scope


class Action(StrEnum):
    REWRITE = "rewrite"  # write the advertised registration (replacing or mirroring the original)
    # An instance's data rewritten in its own node, which stays its provider's (replace mode).
    REWRITE_IN_PLACE = "rewrite-in-place"
    UPDATE = "update"  # re-point, or take over from an earlier run, a rewritten registration
    RESTORE = "restore"  # re-create a rewritten registration that vanished (e.g. session loss)
    REMOVE = "remove"  # a rewritten registration whose container or original is gone
    DROP_ORIGINAL = "drop-original"  # provider re-registered; its rewritten twin already exists
    KEEP = "keep"  # rewritten by this sidecar and still right
    LEAVE = "leave"  # not ours to change, with the reason
    FORGET = "forget"  # a remembered rewrite that is gone and should stay gone
    HOLD = "hold"  # a remembered rewrite whose container does not serve now: wait for it

    @property
    def writes(self) -> bool:
        return self not in (Action.KEEP, Action.LEAVE, Action.FORGET, Action.HOLD)


class Mode(StrEnum):
    REPLACE = "replace"
    MIRROR = "mirror"


@dataclass(frozen=True)
class Identity:
    """Who is planning: the sidecar's ZooKeeper session, its Docker engine, its advertised host
    (and where that came from), its default mode and its scope.

    ``session`` is None for an observer (``plan``), which counts every node of its engine's
    sidecar as managed instead of taking it over.
    """

    session: int | None
    engine: str
    advertise_host: str
    mode: Mode = Mode.REPLACE
    scope: Scope = field(default_factory=Scope)
    advertise_source: str = "--advertise-host"


@dataclass(frozen=True)
class Remembered:
    """A node this sidecar wrote, as it wrote it, with what it knows about it."""

    node: RegistryNode
    marker: Marker


@dataclass(frozen=True)
class PathView:
    """What the planner sees of one path.

    ``remembered`` are this sidecar's rewritten nodes of the path as last written, so that
    ones that vanished (its own session expired) can be re-created, and instance nodes (whose
    data is the application's) can be told apart. In mirror mode ``mirror`` holds the nodes
    of the matching path under the mirror root. ``parsed`` holds what its nodes parse to,
    each parsed once for every step that plans them.
    """

    parent: str
    nodes: Sequence[RegistryNode]
    remembered: Sequence[Remembered] = ()
    mirror_parent: str | None = None
    mirror: Sequence[RegistryNode] = ()
    instances: bool = False
    parsed: Parses = field(default_factory=Parses, compare=False, repr=False)


@dataclass(frozen=True, eq=False, slots=True)
class Decision:
    """What happens to one registry node, why, and the transaction that does it.

    Compared and hashed by identity: a pass keys each decision's outcome by the decision.
    """

    action: Action
    node: RegistryNode
    reason: str
    original: Endpoint | None = None
    advertised: Endpoint | None = None
    container: Container | None = None
    transaction: Transaction | None = None
    local: bool = True
    provisional: bool = False  # may turn out otherwise without any event: plan again later
    suspended: bool = False  # removed while its container does not serve; restored after
    marker: Marker | None = None  # what the node it creates or keeps is a rewrite of
    refused: bool = False  # left alone because its session is not provably this host's
    decided_by: str = ""  # the scope, labels and address source behind the decision
    # It keeps a node of the sidecar's own that bears its original's name: an instance
    # migrated in place, in the sidecar's session until its provider registers again.
    own_in_place: bool = False

    @property
    def settled(self) -> bool:
        """Whether planning again can only decide the same until the path, a container or a
        provider session changes: nothing to write, wait for or prove."""
        quiet = self.action in (Action.KEEP, Action.LEAVE, Action.FORGET)
        return quiet and not (self.refused or self.provisional)

    @property
    def interface(self) -> str:
        return interface_of(self.node.parent)

    @property
    def rewritten_path(self) -> str | None:
        """The node this decision leaves in place as the sidecar's own, if any."""
        if self.action is Action.KEEP:
            ours = self.marker is not None and (
                self.marker.original != self.node.name or self.own_in_place
            )
            return self.node.path if ours else None
        creates = (
            [op for op in self.transaction.ops if isinstance(op, Create)]
            if self.transaction
            else []
        )
        return creates[0].path if creates else None


def interface_of(path: str) -> str:
    """``/dubbo/com.x.Svc/providers`` -> ``com.x.Svc``; ``/services/shop`` -> ``shop``."""
    segments = path.rstrip("/").rsplit("/", 2)
    return unquote(segments[-2] if segments[-1] == "providers" else segments[-1])


def decide(base: Decision, action: Action, reason: str, *ops: Op) -> Decision:
    """``base`` with this action, reason and transaction (none without operations)."""
    return replace(
        base, action=action, reason=reason, transaction=Transaction(ops) if ops else None
    )


def published_reason(found: Mapped) -> str:
    binding = found.binding
    source = "advertise host" if binding.any_host_address else f"binding host IP {binding.host_ip}"
    return (
        f"container {found.container.name} publishes {binding.container_port}/tcp "
        f"on host port {binding.host_port} ({source})"
    )
