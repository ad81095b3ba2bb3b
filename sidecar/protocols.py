"""Where the loop meets the outside world: the registry, the servers' session origins and the
container engine, as typed protocols. ZooKeeper (sidecar/registry/) and Docker
(sidecar/sources/docker.py) implement them; fast tests of the loop use in-memory twins."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from sidecar.model import (
    AclEntry,
    Container,
    Listing,
    Origins,
    RegistryNode,
    Transaction,
    WriteResult,
)


class RegistrySession(Protocol):
    """A ZooKeeper session: its identity and connection."""

    @property
    def session_id(self) -> int: ...

    @property
    def session_password(self) -> bytes: ...

    @property
    def connected(self) -> bool: ...

    @property
    def alive(self) -> bool: ...

    def connect(self, timeout: float) -> None: ...

    def connect_in_background(self) -> None: ...

    def close(self, timeout: float = 1.0) -> None: ...


@dataclass(frozen=True)
class Reading:
    """How ``Reads.read_paths`` reads (see there)."""

    progress: Callable[[str, int, int], None] | None = None
    uncached: Collection[str] = ()
    watch: bool = True
    wanted: Callable[[str, str], bool] | None = None


class Nodes(Protocol):
    """The nodes under each parent, read: what each registry implements, and what
    ``Reads.read_paths`` and ``Coordination.nodes_under`` ask."""

    def read_nodes(self, parents: list[str], how: Reading) -> dict[str, list[RegistryNode]]: ...


class Reads(Nodes, Protocol):
    """What the registry holds, read. Reads set watches whose callbacks only report the path."""

    def read_paths(
        self,
        parents: Iterable[str],
        progress: Callable[[str, int, int], None] | None = None,
        uncached: Collection[str] = (),
        watch: bool = True,
        wanted: Callable[[str, str], bool] | None = None,
    ) -> dict[str, list[RegistryNode]]:
        """Every node under each path, read pipelined; watches set on each parent (unless
        ``watch`` is False: paths only this sidecar's own engine changes). ``wanted(parent,
        name)`` False: that child is left out, unread.

        A parent that does not exist yet maps to an empty list and gets an existence watch.
        Paths and nodes this session may not read are left out and listed in ``denied``.
        ``progress(phase, done, total)`` is told how a long read goes, every few seconds.
        Children of ``uncached`` paths are always read: their data may change in place.
        """
        return self.read_nodes(list(parents), Reading(progress, uncached, watch, wanted))

    def list_children(self, path: str) -> list[str]: ...

    def providers_paths(self, root: str) -> list[str]: ...

    def changed_since_read(self, parents: Iterable[str]) -> set[str]: ...

    def list_names(self, parents: Iterable[str]) -> dict[str, Listing | None]: ...

    def moved_only_by_own_writes(self, parent: str, version: int) -> bool: ...

    def stats(
        self, paths: Iterable[str], watch: bool = False
    ) -> dict[str, tuple[int, int] | None]: ...

    def watch_node(self, path: str) -> RegistryNode | None: ...

    def acls(self, paths: Iterable[str]) -> dict[str, list[AclEntry] | None]: ...

    def take_denied(self) -> set[str]: ...


class Transactions(Protocol):
    """The registry written: ``multi`` transactions, all of each or none."""

    def start(self, transactions: list[Transaction]) -> Callable[[], list[WriteResult]]: ...


class Coordination(Nodes, Protocol):
    """The nodes sidecars coordinate through (sidecar/coordination/): ephemeral nodes held in
    this session, sequential ballots, persistent nodes written whole."""

    def nodes_under(self, parent: str, watch: bool = True) -> list[RegistryNode]:
        """The nodes under ``parent`` (watched unless ``watch`` is False)."""
        return self.read_nodes([parent], Reading(watch=watch))[parent]

    def owner_of(self, path: str) -> int | None: ...

    def read_data(self, path: str) -> bytes | None: ...

    def acquire(self, path: str, data: bytes, take_from: int | None = None) -> bool: ...

    def release(self, path: str) -> None: ...

    def join(self, prefix: str, data: bytes) -> str: ...

    def put(self, nodes: Mapping[str, bytes]) -> dict[str, str]: ...


class Registry(RegistrySession, Reads, Transactions, Coordination, Protocol):
    """The whole registry, as the wiring builds it; each component takes the narrowest part."""


class OriginSource(Protocol):
    """Where each ZooKeeper session connects from, as the servers tell (None: none of them
    tells; see model.Origins for an answer some servers did not give)."""

    def fetch(self) -> Origins | None: ...


class Engine(Protocol):
    """The container engine, read only. Raises sources.docker.DockerUnavailable when it does
    not answer."""

    def engine_id(self) -> str: ...

    def running_containers(self) -> list[Container]: ...

    def container(self, container_id: str) -> Container | None: ...

    def networks(self) -> tuple[list[str], list[str]]: ...

    def close(self) -> None: ...


class Source(Protocol):
    """A thread that watches something and only marks work dirty."""

    def start(self) -> None: ...

    def stop(self) -> None: ...
