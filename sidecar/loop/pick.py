"""Which paths one pass reads: the dirty ones; on a resync the local ones and a slice of the
rest (all of them on a full one); and the paths of the rewrites the records say this engine
took over. (In a fleet, the indexer routes the rest here: see roles.py.)"""

from __future__ import annotations

from sidecar.loop.components import Components
from sidecar.loop.dirty import Work
from sidecar.plan import Remembered
from sidecar.records import decode as decode_record
from sidecar.records import records_parent


def refresh_before_reading(p: Components, work: Work) -> None:
    """What a pass that reads the registry refreshes first: this host's addresses on a full
    pass; this engine's records on a full pass, once a peer is gone, or when they may be
    stale (the paths of rewrites they name and this sidecar did not know join the work)."""
    if work.full:
        p.inventory.refresh_host_addresses()
    if p.lease.take_peers_gone() or work.full or p.memory.records_stale:
        work.paths |= read_records(p)


def paths_to_read(p: Components, work: Work) -> tuple[set[str], dict[str, set[str]]]:
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


def local_paths(p: Components, work: Work, sweep: set[str]) -> set[str]:
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


def scope_paths(p: Components, root: str) -> list[str]:
    """The paths to plan under a root: ``providers`` paths, or applications' paths."""
    registry = p.registry
    if root in p.roots.services_roots:
        return [f"{root}/{app}" for app in registry.list_children(root)]
    return registry.providers_paths(root)


def all_paths(p: Components) -> list[str]:
    """Every path to plan under every root (plan and status read them all)."""
    return [path for root in p.roots.all for path in scope_paths(p, root)]


def read_records(p: Components) -> set[str]:
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
