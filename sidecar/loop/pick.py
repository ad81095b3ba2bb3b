"""Which paths one pass reads: the dirty ones; on a resync the local ones and a slice of the
rest (all of them on a full one); in a fleet, those the indexer routes here; and the paths
of the rewrites the records say this engine took over."""

from __future__ import annotations

from sidecar.fleet.member import FleetKeeper
from sidecar.loop.dirty import Work
from sidecar.loop.parts import Parts
from sidecar.loop.retries import Whole
from sidecar.plan import Remembered
from sidecar.records import decode as decode_record
from sidecar.records import records_parent
from sidecar.registry.outcomes import Interrupted


def paths_to_read(p: Parts, work: Work) -> tuple[set[str], dict[str, set[str]]]:
    """The paths this pass reads, and each re-listed root's current paths (taken as known
    only once the pass has succeeded)."""
    roots = set(p.roots.all) if work.full else work.roots
    paths = set(work.paths)
    listed: dict[str, set[str]] = {}
    for root in roots:
        current = set(scope_paths(p, root))
        listed[root] = current
        paths |= current if work.full else current - p.index.known[root]
    if work.full or work.local:
        paths |= local_paths(p, work, p.index.next_sweep_slice() if work.local else set())
    return paths, listed


def local_paths(p: Parts, work: Work, sweep: set[str]) -> set[str]:
    """The paths that concern this host: those holding its rewrites (they may have to be
    re-created) and those its containers' addresses appear in. A periodic resync plans only
    those that may plan differently now: changed since last read, left unsettled by their
    last plan, or holding a rewrite whose provider session the servers no longer know. A
    full pass, a new address or a scope taken over plans them all. ``sweep``: other paths
    to plan if they changed since last read (the sweep's slice), checked in the same go."""
    paths = set(p.memory.managed) | p.index.paths_of(p.inventory.local_keys())
    if work.full or work.replan:
        return paths | p.registry.changed_since_read(sweep - paths)
    restless = paths & p.index.restless
    providers = p.memory.provider_sessions(paths - restless)
    gone = p.observer.sessions_gone(set().union(*providers.values()))
    restless |= {path for path, sessions in providers.items() if sessions & gone}
    return restless | p.registry.changed_since_read((paths | sweep) - restless)


def fleet_paths(
    p: Parts, fleet: FleetKeeper, session: int, work: Work, about: dict[str, object]
) -> set[str]:
    """In a fleet: the paths the indexer says concern this host (and changed), plus this
    host's own; registry changes are the indexer's (this sidecar's, if elected). ``about``:
    what the member node says besides the addresses that route work here."""
    scope = p.lease.scope
    containers = {
        address
        for c in p.inventory.index.by_id.values()
        if scope.excludes(c.id) is None
        for address in c.addresses
    }
    hosts = p.observer.host_addresses(p.inventory.interface_addresses)
    hosts |= {str(about["advertise_host"])} if about.get("advertise_host") else set()
    member = f"{p.engine_id}+{scope.lease_name}"
    paths = work.paths | _keep(p, fleet, member, session, hosts, containers, about, work)
    if work.full or work.local:
        paths |= local_paths(p, work, set())
    return paths


def _keep(
    p: Parts, fleet: FleetKeeper, member: str, session: int, hosts: set[str],
    containers: set[str], about: dict[str, object], work: Work,
) -> set[str]:  # fmt: skip
    """This member's part in the fleet, kept apart: whatever fails there (a node it may not
    write, anything) is reported and tried again later, and the pass goes on with this
    host's own paths."""
    try:
        told = fleet.keep(member, session, hosts, containers, about, work)
    except Interrupted:
        raise
    except Exception as exc:
        fleet.problem = f"{type(exc).__name__} {exc}".strip()
        p.events.connection("fleet", "failed", problem=fleet.problem)
        p.retries.schedule(Whole.FLEET)
        return set()
    if fleet.problem:
        fleet.problem = ""
        p.events.recovered("fleet")
    p.retries.succeeded(Whole.FLEET)
    return told


def scope_paths(p: Parts, root: str) -> list[str]:
    """The paths to plan under a root: ``providers`` paths, or applications' paths."""
    registry = p.registry
    if root in p.roots.services_roots:
        return [f"{root}/{app}" for app in registry.list_children(root)]
    return registry.providers_paths(root)


def all_paths(p: Parts) -> list[str]:
    """Every path to plan under every root (plan and status read them all)."""
    return [path for root in p.roots.all for path in scope_paths(p, root)]


def read_records(p: Parts) -> set[str]:
    """Read this engine's records (see sidecar/records.py); returns the paths holding
    rewrites this sidecar did not know of (to read and restore now)."""
    parent = records_parent(p.engine_id)
    nodes = p.registry.read_paths([parent], watch=False)[parent]
    remembered = []
    for node in nodes:
        found = decode_record(node.data)
        if found is None:
            p.events.connection(f"record {node.path}", "unreadable", problem="left alone")
        elif p.roots.root_of(found[0].parent) is not None:
            remembered.append(Remembered(*found))
        # else: a record under another root, of a sidecar of this engine serving another
        # registry: not this one's to restore or forget.
    return p.memory.records_read({n.path for n in nodes}, remembered)
