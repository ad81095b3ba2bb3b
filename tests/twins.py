"""In-memory twins of the loop's protocols (sidecar/protocols.py): a registry with sessions,
ephemeral owners, versions, one-shot watches and atomic transactions; a container engine that
can go away; servers that tell where sessions connect from. Each subclasses the protocol it
stands in for, so that mypy holds it to that protocol. For fast tests of the loop itself;
behaviour that is ZooKeeper's or Docker's own is tested against the real ones."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from sidecar.model import (
    AclEntry,
    Connection,
    Container,
    Create,
    Delete,
    Listing,
    Origin,
    Origins,
    Outcome,
    RegistryNode,
    SetData,
    Transaction,
    WriteResult,
)
from sidecar.protocols import Engine, OriginSource, Reading, Registry
from sidecar.sources.docker import DockerUnavailable


@dataclass
class _Node:
    data: bytes
    owner: int
    version: int = 0
    cversion: int = 0


@dataclass
class Tree:
    """The nodes every client of one ensemble sees."""

    nodes: dict[str, _Node] = field(default_factory=dict)
    clients: list[MemoryRegistry] = field(default_factory=list)
    transactions: list[Transaction] = field(default_factory=list)  # as applied, in order
    unwritable: set[str] = field(default_factory=set)  # nodes whose ACL refuses every writer
    acls: dict[str, list[AclEntry]] = field(default_factory=dict)  # others: open to anyone


@dataclass
class MemoryRegistry(Registry):
    """One client's session on a ZooKeeper tree held in a dict. ``session`` is the sidecar's;
    other sessions are just ids. ``another`` gives another sidecar its own session on the same
    tree."""

    session: int = 0x5000
    connected: bool = True
    alive: bool = True
    on_change: Callable[[str], None] = lambda _: None
    on_connection: Callable[[Connection], None] = lambda _: None
    tree: Tree = field(default_factory=Tree)
    failing_reads: int = 0  # the next this many reads raise, as a lost connection does
    requests: int = 0  # requests received, as the servers would count them
    _child_watches: set[str] = field(default_factory=set)
    _data_watches: set[str] = field(default_factory=set)
    _read_cversions: dict[str, int] = field(default_factory=dict)
    _written: set[str] = field(default_factory=set)
    reads: Counter[str] = field(default_factory=Counter)  # "list|get|stat <path>" -> how often

    def __post_init__(self) -> None:
        self.tree.clients.append(self)

    @property
    def nodes(self) -> dict[str, _Node]:
        return self.tree.nodes

    def another(self, session: int) -> MemoryRegistry:
        """Another client (a second sidecar, a restarted one) on the same tree."""
        return MemoryRegistry(session=session, tree=self.tree)

    # -- what tests do to it ----------------------------------------------------------------

    def add(self, path: str, data: bytes = b"", owner: int = 0x2002) -> None:
        """Create ``path`` (and its parents) as another client would."""
        self._ensure(path.rpartition("/")[0])
        self._create(path, data, owner)

    def remove(self, path: str) -> None:
        self._delete(path)

    def set_data(self, path: str, data: bytes) -> None:
        """Replace a node's data as another client would (any version)."""
        node = self.nodes[path]
        node.data, node.version = data, node.version + 1
        self._data_changed(path, path.rpartition("/")[0])

    def expire(self, session: int) -> None:
        """End ``session``: its ephemeral nodes go."""
        for path in [p for p, n in self.nodes.items() if n.owner == session]:
            self._delete(path)

    def children(self, path: str) -> list[str]:
        prefix = path + "/"
        return sorted(p[len(prefix) :] for p in self.nodes if p.startswith(prefix)
                      and "/" not in p[len(prefix) :])  # fmt: skip

    # -- the Registry protocol ---------------------------------------------------------------

    @property
    def session_id(self) -> int:
        return self.session

    @property
    def session_password(self) -> bytes:
        return b"\x01" * 16

    def connect(self, timeout: float) -> None:
        self.connected = True

    def connect_in_background(self) -> None:
        self.connected = True
        self.on_connection(Connection.CONNECTED)

    def close(self, timeout: float = 1.0) -> None:
        self.expire(self.session)

    def list_children(self, path: str) -> list[str]:
        self._read()
        self._child_watches.add(path)
        return self.children(path) if path in self.nodes else []

    def providers_paths(self, root: str) -> list[str]:
        return [f"{root}/{name}/providers" for name in self.list_children(root)]

    def read_nodes(self, parents: list[str], how: Reading) -> dict[str, list[RegistryNode]]:
        found: dict[str, list[RegistryNode]] = {}
        for parent in parents:
            self._read()
            self.reads[f"list {parent}"] += 1
            if how.watch:
                self._child_watches.add(parent)
            node = self.nodes.get(parent)
            self._read_cversions[parent] = node.cversion if node else -1
            self._written.discard(parent)
            found[parent] = []
            for name in self.children(parent) if node else []:
                if how.wanted is not None and not how.wanted(parent, name):
                    continue
                self.requests += 1
                self.reads[f"get {parent}/{name}"] += 1
                child = self.nodes[f"{parent}/{name}"]
                if parent in how.uncached:
                    self._data_watches.add(f"{parent}/{name}")
                found[parent].append(
                    RegistryNode(parent, name, child.data, child.owner, child.version)
                )
        return found

    def moved_only_by_own_writes(self, parent: str, version: int) -> bool:
        return parent in self._written and self._read_cversions.get(parent) == version

    def changed_since_read(self, parents: Iterable[str]) -> set[str]:
        changed = set()
        for parent in parents:
            self.requests += 1
            self.reads[f"stat {parent}"] += 1
            node = self.nodes.get(parent)
            if node is None or self._read_cversions.get(parent) != node.cversion:
                changed.add(parent)
        return changed

    def list_names(self, parents: Iterable[str]) -> dict[str, Listing | None]:
        found: dict[str, Listing | None] = {}
        for parent in parents:
            self._read()
            self.reads[f"list {parent}"] += 1
            if parent in self.nodes:
                self._child_watches.add(parent)
                found[parent] = Listing(self.children(parent), self.nodes[parent].cversion)
            else:
                self._data_watches.add(parent)
                found[parent] = None
        return found

    def stats(self, paths: Iterable[str], watch: bool = False) -> dict[str, tuple[int, int] | None]:
        found: dict[str, tuple[int, int] | None] = {}
        for path in paths:
            self._read()
            self.reads[f"stat {path}"] += 1
            node = self.nodes.get(path)
            if watch:
                self._data_watches.add(path)
            found[path] = (node.owner, node.version) if node else None
        return found

    def acls(self, paths: Iterable[str]) -> dict[str, list[AclEntry] | None]:
        found: dict[str, list[AclEntry] | None] = {}
        for path in paths:
            self._read()
            acl = self.tree.acls.get(path, [AclEntry("world", "anyone", 31)])
            found[path] = acl if path in self.nodes else None
        return found

    def watch_node(self, path: str) -> RegistryNode | None:
        self._read()
        self._data_watches.add(path)
        node = self.nodes.get(path)
        parent, _, name = path.rpartition("/")
        return RegistryNode(parent, name, node.data, node.owner, node.version) if node else None

    def put(self, nodes: Mapping[str, bytes]) -> dict[str, str]:
        failed = {}
        for path, data in nodes.items():
            self.requests += 1
            if path in self.tree.unwritable:
                failed[path] = "NoAuthError"
                continue
            node = self.nodes.get(path)
            if node is None:
                self._ensure(path.rpartition("/")[0])
                self._create(path, data, 0)
            else:
                node.data, node.version = data, node.version + 1
                self._data_changed(path, path.rpartition("/")[0])
        return failed

    def join(self, prefix: str, data: bytes) -> str:
        self.requests += 1
        parent = prefix.rpartition("/")[0]
        self._ensure(parent)
        # As ZooKeeper numbers them: the parent's child version, which every create and
        # delete of a child moves.
        path = f"{prefix}{self.nodes[parent].cversion:010d}"
        self._create(path, data, self.session)
        return path

    def owner_of(self, path: str) -> int | None:
        self._read()
        self._data_watches.add(path)
        node = self.nodes.get(path)
        return node.owner if node else None

    def read_data(self, path: str) -> bytes | None:
        self._read()
        node = self.nodes.get(path)
        return node.data if node else None

    def acquire(self, path: str, data: bytes, take_from: int | None = None) -> bool:
        self.requests += 1
        self._ensure(path.rpartition("/")[0])
        holder = self.nodes.get(path)
        if holder is None:
            self._create(path, data, self.session)
        elif take_from is not None and holder.owner == take_from:
            self._delete(path)
            self._create(path, data, self.session)
        return self.nodes[path].owner == self.session

    def release(self, path: str) -> None:
        if path in self.nodes:
            self._delete(path)

    def start(self, transactions: list[Transaction]) -> Callable[[], list[WriteResult]]:
        results = [self._apply(t) for t in transactions]
        return lambda: results

    def take_denied(self) -> set[str]:
        return set()

    # -- inside ---------------------------------------------------------------------------------

    def _read(self) -> None:
        self.requests += 1
        if self.failing_reads:
            self.failing_reads -= 1
            raise ConnectionError("connection lost (twin)")

    def _apply(self, transaction: Transaction) -> WriteResult:
        self.requests += 1
        if not self.connected:
            return WriteResult(Outcome.UNKNOWN, "ConnectionLoss")
        if any(op.path in self.tree.unwritable for op in transaction.ops):
            return WriteResult(Outcome.DENIED, "NoAuthError")
        problem = self._dry_run(transaction)
        if problem:
            return WriteResult(Outcome.FAILED, problem)
        self.tree.transactions.append(transaction)
        for op in transaction.ops:
            parent = op.path.rpartition("/")[0]
            if isinstance(op, Create | Delete) and parent in self._read_cversions:
                self._read_cversions[parent] += 1  # as the real registry's cache follows it
                self._written.add(parent)
            if isinstance(op, Create):
                self._ensure(op.path.rpartition("/")[0])
                self._create(op.path, op.data, 0 if op.persistent else self.session)
            elif isinstance(op, SetData):
                self.set_data(op.path, op.data)
            elif isinstance(op, Delete):
                self._delete(op.path)
        return WriteResult(Outcome.APPLIED)

    def _dry_run(self, transaction: Transaction) -> str:
        """What the first failing operation would fail with, applied in order ("" if none)."""
        versions = {path: node.version for path, node in self.nodes.items()}
        for op in transaction.ops:
            version = versions.get(op.path)
            if isinstance(op, Create):
                if version is not None:
                    return "NodeExistsError"
                versions[op.path] = 0
            elif version is None:
                return "NoNodeError"
            elif op.version not in (-1, version):
                return "BadVersionError"
            elif isinstance(op, SetData):
                versions[op.path] = version + 1
            elif isinstance(op, Delete):
                del versions[op.path]
        return ""

    def _ensure(self, path: str) -> None:
        if not path or path in self.nodes:
            return
        self._ensure(path.rpartition("/")[0])
        self._create(path, b"", 0)

    def _create(self, path: str, data: bytes, owner: int) -> None:
        self.nodes[path] = _Node(data, owner)
        self._children_changed(path.rpartition("/")[0])
        self._data_changed(path, path)

    def _delete(self, path: str) -> None:
        for child in self.children(path):
            self._delete(f"{path}/{child}")
        del self.nodes[path]
        self._children_changed(path.rpartition("/")[0])
        self._data_changed(path, path)

    def _children_changed(self, parent: str) -> None:
        if parent in self.nodes:
            self.nodes[parent].cversion += 1
        for client in self.tree.clients:
            client._fire(client._child_watches, parent, parent)

    def _data_changed(self, path: str, reported: str) -> None:
        for client in self.tree.clients:
            client._fire(client._data_watches, path, reported)

    def _fire(self, watches: set[str], path: str, reported: str) -> None:
        if path in watches:
            watches.discard(path)
            self.on_change(reported)


@dataclass
class MemoryEngine(Engine):
    """A container engine with a fixed identity; ``down`` makes every call fail."""

    containers: dict[str, Container] = field(default_factory=dict)
    down: bool = False
    identity: str = "TWIN@host"
    subnets: list[str] = field(default_factory=lambda: ["172.17.0.0/16"])
    gateways: list[str] = field(default_factory=lambda: ["172.17.0.1"])

    def engine_id(self) -> str:
        self._check()
        return self.identity

    def running_containers(self) -> list[Container]:
        self._check()
        return list(self.containers.values())

    def container(self, container_id: str) -> Container | None:
        self._check()
        return self.containers.get(container_id)

    def networks(self) -> tuple[list[str], list[str]]:
        self._check()
        return list(self.subnets), list(self.gateways)

    def close(self) -> None:
        return

    def _check(self) -> None:
        if self.down:
            raise DockerUnavailable("Docker Engine at twin: connection refused")


@dataclass
class FixedOrigins(OriginSource):
    """Servers that say each session connects from where this dict says (None: no server
    tells); ``unanswered`` servers make the answer incomplete."""

    origins: dict[int, Origin] | None = field(default_factory=dict)
    unanswered: tuple[str, ...] = ()
    fetches: int = 0

    def fetch(self) -> Origins | None:
        self.fetches += 1
        if self.origins is None:
            return None
        return Origins(dict(self.origins), self.unanswered)
