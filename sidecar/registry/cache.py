"""What the registry remembers of its last reads: each path's child version (the periodic
sweep re-reads only paths whose children moved without a watch saying so) and, for recently
read paths, their nodes (unchanged children are not read again; children a read chose not
to read are known by name only). Pure bookkeeping."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from sidecar.model import Check, Delete, RegistryNode, SetData, Transaction

# Paths whose nodes are kept: a large registry is read once at start, while storms hit a few
# paths again and again.
CACHED_PATHS = 2000


class ReadCache:
    """Child versions of every path read (an int each), nodes of the recently read ones."""

    def __init__(self) -> None:
        self._child_versions: dict[str, int] = {}
        self._written: set[str] = set()  # paths this session wrote children of since reading
        # name -> node as read, or None: listed, not read (it did not concern the reader)
        self._nodes: OrderedDict[str, dict[str, RegistryNode | None]] = OrderedDict()

    def version(self, parent: str) -> int | None:
        return self._child_versions.get(parent)

    def moved_only_by_own_writes(self, parent: str, version: int) -> bool:
        """Whether ``parent`` at child version ``version`` differs from its last read by
        this session's own writes alone."""
        return parent in self._written and self._child_versions.get(parent) == version

    def drop(self, parent: str) -> None:
        """``parent`` is gone."""
        self._written.discard(parent)
        self._nodes.pop(parent, None)
        self._child_versions.pop(parent, None)

    def unknown(
        self, parent: str, children: list[str], cversion: int, known: list[RegistryNode]
    ) -> list[str]:
        """The children whose data must be read (or skipped again); the others are taken from
        the last read (added to ``known``). The cache is trusted only if the parent's child
        version moved by exactly the creates and deletes the two listings show: then no child
        was deleted and created again under the same name in between."""
        old_version, old_nodes = self._child_versions.get(parent), self._nodes.get(parent)
        if old_version is None or old_nodes is None:
            return list(children)
        now = set(children)
        if cversion - old_version != len(now.symmetric_difference(old_nodes)):
            return list(children)
        cached = [old_nodes.get(name) for name in children]
        known.extend(node for node in cached if node is not None)
        return [name for name, node in zip(children, cached, strict=True) if node is None]

    def store(
        self, parent: str, cversion: int, nodes: list[RegistryNode], skipped: Iterable[str] = ()
    ) -> None:
        """What a read of ``parent`` found; ``skipped``: children listed but not read."""
        self._child_versions[parent] = cversion
        self._written.discard(parent)
        self._nodes[parent] = dict.fromkeys(skipped) | {n.name: n for n in nodes}
        self._nodes.move_to_end(parent)
        while len(self._nodes) > CACHED_PATHS:
            self._nodes.popitem(last=False)

    def applied(self, transaction: Transaction, session: int) -> None:
        """Bring the cache of the touched paths to what the transaction made: the next read
        of such a path then reads no data at all for the nodes the sidecar wrote."""
        for op in transaction.ops:
            parent, _, name = op.path.rpartition("/")
            if isinstance(op, Check) or parent not in self._child_versions:
                continue
            nodes = self._nodes.get(parent)
            if isinstance(op, SetData):
                # Data changed in place: the children did not move, but what is cached for
                # the node is stale (its version and owner are not known here).
                if nodes is not None:
                    nodes.pop(name, None)
                continue
            self._child_versions[parent] += 1
            self._written.add(parent)
            if nodes is None:
                continue
            if isinstance(op, Delete):
                nodes.pop(name, None)
            else:
                owner = 0 if op.persistent else session
                nodes[name] = RegistryNode(parent, name, op.data, owner, 0)
