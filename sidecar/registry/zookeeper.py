"""Where ZooKeeper is read, watched and written (kazoo is called only in sidecar/registry/).

Reads set one-shot watches whose callback only reports the path; writes are ``multi``
transactions built by the planner. Every request is asynchronous and waited for in short
slices, so that a stop request is honoured even while ZooKeeper does not answer.
Everything kazoo returns is turned into typed values here.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from kazoo.exceptions import (
    ConnectionLoss,
    NoAuthError,
    NodeExistsError,
    NoNodeError,
)

from sidecar.logs import Progress
from sidecar.model import (
    AclEntry,
    Check,
    Create,
    Delete,
    Listing,
    Outcome,
    RegistryNode,
    SetData,
    Transaction,
    WriteResult,
)
from sidecar.protocols import Reading, Registry
from sidecar.registry.client import Session
from sidecar.registry.outcomes import (
    Failed,
    Interrupted,
    batches,
    cause,
    outcome,
    request_size,
)


class ZooKeeperRegistry(Session, Registry):
    """A ZooKeeper session plus the reads and writes the sidecar needs."""

    def owner_of(self, path: str) -> int | None:
        """The session owning the ephemeral node ``path`` (None if absent); watched."""
        stat = self._wait(self._client.exists_async(path, watch=self._watched))
        if stat is None:
            self._absent.add(path)  # its creation is reported as the node's own change
            return None
        return int(stat.ephemeralOwner)

    def read_data(self, path: str) -> bytes | None:
        try:
            data, _ = self._wait(self._client.get_async(path))
        except NoNodeError:
            return None
        return bytes(data or b"")

    def acquire(self, path: str, data: bytes, take_from: int | None = None) -> bool:
        """Create the ephemeral node ``path`` in this session; if ``take_from`` owns it, take it
        over in one transaction. True if this session owns it afterwards. Watched."""
        self._ensure_parent(path)
        try:
            self._wait(self._client.create_async(path, data, acl=self._acl, ephemeral=True))
        except NodeExistsError:
            stat = self._wait(self._client.exists_async(path))
            if stat is not None and take_from is not None and stat.ephemeralOwner == take_from:
                request = self._client.transaction()
                request.delete(path, version=stat.version)
                request.create(path, data, acl=self._acl, ephemeral=True)
                self._wait(request.commit_async())
        return self.owner_of(path) == self.session_id

    def list_children(self, path: str) -> list[str]:
        """Children of ``path``, watched; none, and a watch for its creation, if it is absent."""
        try:
            return list(self._wait(self._client.get_children_async(path, watch=self._watched)))
        except NoAuthError:
            self.denied.add(path)
            return []
        except NoNodeError:
            if self.owner_of(path) is not None:  # created since the listing: read it again
                self._on_change(path)
            return []

    def providers_paths(self, root: str) -> list[str]:
        """The ``providers`` path of every interface under a registry root (watching the root)."""
        return [f"{root}/{name}/providers" for name in self.list_children(root)]

    def read_nodes(self, parents: list[str], how: Reading) -> dict[str, list[RegistryNode]]:
        """``Reads.read_paths``: listed, then the children's data read, pipelined."""
        report = Progress(how.progress)
        uncached, watch, wanted = how.uncached, how.watch, how.wanted
        nodes: dict[str, list[RegistryNode]] = {parent: [] for parent in parents}
        listings, versions = self._list(parents, uncached, nodes, report, watch)
        children = [(parent, name) for parent in parents for name in listings[parent]]
        skipped: dict[str, list[str]] = {parent: [] for parent in parents}
        if wanted is not None:
            kept = []
            for parent, name in children:
                if wanted(parent, name):
                    kept.append((parent, name))
                else:
                    skipped[parent].append(name)
            children = kept

        def get(child: tuple[str, str]) -> Any:
            # Data that changes in place (instances) is watched: a change re-reads the path.
            watch_data = self._watched if watch and child[0] in uncached else None
            return self._client.get_async(f"{child[0]}/{child[1]}", watch=watch_data)

        for done, ((parent, name), result) in enumerate(self._pipelined(children, get)):
            report("reading registrations", done, len(children))
            if isinstance(result, NoNodeError):
                continue  # deleted since the listing; its parent's watch has fired
            if isinstance(result, NoAuthError):
                self.denied.add(f"{parent}/{name}")
                continue
            if isinstance(result, Exception):
                raise result
            data, stat = result
            nodes[parent].append(
                RegistryNode(parent, name, data or b"", stat.ephemeralOwner, stat.version)
            )
        for parent, version in versions.items():
            if parent not in uncached:
                self._cache.store(parent, version, nodes[parent], skipped[parent])
        return nodes

    def _list(
        self,
        parents: list[str],
        uncached: Collection[str],
        nodes: dict[str, list[RegistryNode]],
        report: Progress,
        watch: bool,
    ) -> tuple[dict[str, list[str]], dict[str, int]]:
        """List each parent (watched): the children whose data must be read (the cache gives
        the others, added to ``nodes``), and each parent's child version."""
        listings: dict[str, list[str]] = {}
        versions: dict[str, int] = {}
        for parent, result in self._pipelined(
            parents,
            lambda p: self._client.get_children_async(
                p, watch=self._watched if watch else None, include_data=True
            ),
        ):
            report("listing paths", len(listings), len(parents))
            if isinstance(result, NoNodeError):
                listings[parent] = []
                self._cache.drop(parent)
                if watch and self.owner_of(parent) is not None:  # created since: read again
                    self._on_change(parent)
            elif isinstance(result, NoAuthError):
                listings[parent] = []
                self.denied.add(parent)
            elif isinstance(result, Exception):
                raise result
            else:
                children, stat = result
                versions[parent] = stat.cversion
                self._known_parents.add(parent)  # it exists: creating under it needs no check
                listings[parent] = (
                    list(children)
                    if parent in uncached
                    else self._cache.unknown(parent, children, stat.cversion, nodes[parent])
                )
        return listings, versions

    def list_names(self, parents: Iterable[str]) -> dict[str, Listing | None]:
        """The children's names of each path (no data) and its child version, pipelined and
        watched; None for a path that does not exist (watched for its creation)."""
        parents = list(parents)
        found: dict[str, Listing | None] = {}
        for parent, result in self._pipelined(
            parents,
            lambda p: self._client.get_children_async(p, watch=self._watched, include_data=True),
        ):
            if isinstance(result, NoNodeError):
                found[parent] = None
                if self.owner_of(parent) is not None:  # created since: list it again
                    self._on_change(parent)
            elif isinstance(result, NoAuthError):
                found[parent] = None
                self.denied.add(parent)
            elif isinstance(result, Exception):
                raise result
            else:
                children, stat = result
                found[parent] = Listing(list(children), stat.cversion)
        return found

    def moved_only_by_own_writes(self, parent: str, version: int) -> bool:
        """Whether ``parent``, listed at child version ``version`` (by anyone), differs from
        what this session last read there by its own writes alone: no other client created
        or deleted a child since."""
        return self._cache.moved_only_by_own_writes(parent, version)

    def stats(self, paths: Iterable[str], watch: bool = False) -> dict[str, tuple[int, int] | None]:
        """The owner session and data version of each node (None: gone), pipelined; ``watch``:
        a change of its data fires (instances change in place)."""
        watcher = self._watched if watch else None
        found: dict[str, tuple[int, int] | None] = {}
        for path, result in self._pipelined(
            list(paths), lambda p: self._client.exists_async(p, watch=watcher)
        ):
            if isinstance(result, Exception) and not isinstance(result, NoAuthError):
                raise result
            ok = result is not None and not isinstance(result, Exception)
            found[path] = (int(result.ephemeralOwner), int(result.version)) if ok else None
        return found

    def acls(self, paths: Iterable[str]) -> dict[str, list[AclEntry] | None]:
        """Each node's ACL (None: the node is absent or its ACL may not be read), pipelined."""
        found: dict[str, list[AclEntry] | None] = {}
        for path, result in self._pipelined(list(paths), self._client.get_acls_async):
            if isinstance(result, NoNodeError | NoAuthError):
                found[path] = None
            elif isinstance(result, Exception):
                raise result
            else:
                found[path] = [AclEntry(a.id.scheme, a.id.id, int(a.perms)) for a in result[0]]
        return found

    def watch_node(self, path: str) -> RegistryNode | None:
        """A node's data and owner, watched (None if absent: watched for its creation)."""
        try:
            data, stat = self._wait(self._client.get_async(path, watch=self._watched))
        except NoNodeError:
            return None if self.owner_of(path) is None else self.watch_node(path)
        parent, _, name = path.rpartition("/")
        return RegistryNode(parent, name, bytes(data or b""), stat.ephemeralOwner, stat.version)

    def put(self, nodes: Mapping[str, bytes]) -> dict[str, str]:
        """Write persistent nodes (path -> data) in few ``multi`` requests (one proposal
        each for the ensemble, one notification round), each under the servers'
        jute.maxbuffer. A node that (or whose parent) does not exist yet is created on its
        own. Returns why each node that could not be written was not: one that fails (no
        permission, too large, anything) never holds back the others."""
        paths = list(nodes)
        results = self.start([Transaction((SetData(p, nodes[p], -1),)) for p in paths])()
        failed = {}
        for path, result in zip(paths, results, strict=True):
            if result.error == NoNodeError.__name__:
                problem = self._create_persistent(path, nodes[path])
            else:
                problem = "" if result.ok else result.error or str(result.outcome)
            if problem:
                failed[path] = problem
        return failed

    def _create_persistent(self, path: str, data: bytes) -> str:
        """Create a persistent node (or set its data, if it was created meanwhile); why not,
        or "" once done."""
        create = Transaction((Create(path, data, persistent=True),))
        if request_size(create, self._acl_size) > self._max_request:
            return f"too large for the servers' jute.maxbuffer ({self._max_request} bytes)"
        try:
            self._ensure_parent(path)
            try:
                self._wait(self._client.create_async(path, data, acl=self._acl))
            except NodeExistsError:
                self._wait(self._client.set_async(path, data))
        except Interrupted:
            raise
        except Exception as exc:  # returned, not raised: the caller reports it
            return type(exc).__name__
        return ""

    def join(self, prefix: str, data: bytes) -> str:
        """Create an ephemeral sequential node ``prefix<sequence>`` in this session; its path."""
        self._ensure_parent(prefix)
        created = self._wait(
            self._client.create_async(prefix, data, acl=self._acl, ephemeral=True, sequence=True)
        )
        return str(created)

    def changed_since_read(self, parents: Iterable[str]) -> set[str]:
        """Of ``parents``, those whose children changed since the last read, those never read
        (or read uncached) and those that cannot be checked now: one pipelined ``exists``
        each, no listing, no data."""
        parents = list(parents)
        changed = set()
        for parent, result in self._pipelined(parents, self._client.exists_async):
            known = self._cache.version(parent)
            if isinstance(result, Exception) or result is None or result.cversion != known:
                changed.add(parent)
        return changed

    def apply_all(self, transactions: list[Transaction]) -> list[WriteResult]:
        """Run each transaction as one ZooKeeper ``multi`` (all its ops or none), pipelined."""
        return self.start(transactions)()

    def release(self, path: str) -> None:
        """Delete ``path`` (this session's lease it gives up); absent already is fine."""
        self.apply_all([Transaction((Delete(path, -1),))])

    def start(
        self, transactions: list[Transaction], batched: bool = True
    ) -> Callable[[], list[WriteResult]]:
        """Send the transactions and return at once: calling the result waits for each
        transaction's outcome, in order. The caller may read and plan other paths in between.

        Several transactions travel in one ``multi`` (all of them or none), each multi under
        the servers' jute.maxbuffer: a storm of rewrites costs a fraction of the requests.
        If a batch fails, its transactions are sent again one by one, so each gets its own
        outcome; one the servers drop travels alone from then on. A transaction too large
        for the servers is never sent: its outcome says so, and the others go on.
        """
        started: list[tuple[list[Transaction], int, Any]] = []
        for batch, size, too_large in batches(
            transactions, self._max_request, self._acl_size, self._drops, together=batched
        ):
            try:
                started.append((batch, size, Failed(too_large) if too_large else
                                self._commit(batch)))  # fmt: skip
            except Exception as exc:  # returned, not raised: the outcome reports it
                started.append((batch, size, Failed(exc)))
        return lambda: self._finish(started)

    def _finish(self, started: list[tuple[list[Transaction], int, Any]]) -> list[WriteResult]:
        results: list[WriteResult] = []
        drained = self._drain([((batch, size), result) for batch, size, result in started])
        for (batch, size), result in drained:
            error = cause(result)
            written = outcome(error)
            if isinstance(error, NoNodeError):
                self._known_parents.clear()  # a parent may have been deleted: ensure it again
            if isinstance(error, ConnectionLoss):
                self._drops.dropped(batch, size)
            elif written.outcome is not Outcome.TOO_LARGE:
                for transaction in batch:
                    self._drops.settled(transaction)
            if written.outcome in (Outcome.APPLIED, Outcome.UNKNOWN) or len(batch) == 1:
                results += [written] * len(batch)
            else:
                results += self.start(batch, batched=False)()
        transactions = [t for batch, _, _ in started for t in batch]
        for transaction, result in zip(transactions, results, strict=True):
            if result.ok:
                self._cache.applied(transaction, self.session_id)
        return results

    def _commit(self, transactions: list[Transaction]) -> Any:
        ops = [op for transaction in transactions for op in transaction.ops]
        for op in ops:
            if isinstance(op, Create):
                self._ensure_parent(op.path)
        request = self._client.transaction()
        for op in ops:
            match op:
                case Create(path=path, data=data, persistent=persistent):
                    request.create(path, data, acl=self._acl, ephemeral=not persistent)
                case SetData(path=path, data=data, version=version):
                    request.set_data(path, data, version)
                case Delete(path=path, version=version):
                    request.delete(path, version=version)
                case Check(path=path, version=version):
                    request.check(path, version)
        return request.commit_async()
