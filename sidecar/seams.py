"""Where the loop meets the outside world: the registry, the servers' session origins and the
container engine, as typed protocols. ZooKeeper (sidecar/registry/) and Docker
(sidecar/sources/docker.py) implement them; fast tests of the loop use in-memory twins."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
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


class Registry(Protocol):
    """A ZooKeeper session and the reads and writes the loop needs. Reads set watches whose
    callbacks only report the path; writes are ``multi`` transactions."""

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

    def list_children(self, path: str) -> list[str]: ...

    def providers_paths(self, root: str) -> list[str]: ...

    def read_paths(
        self,
        parents: Iterable[str],
        progress: Callable[[str, int, int], None] | None = None,
        uncached: Collection[str] = (),
        watch: bool = True,
        wanted: Callable[[str, str], bool] | None = None,
    ) -> dict[str, list[RegistryNode]]: ...

    def changed_since_read(self, parents: Iterable[str]) -> set[str]: ...

    def list_names(self, parents: Iterable[str]) -> dict[str, Listing | None]: ...

    def moved_only_by_own_writes(self, parent: str, version: int) -> bool: ...

    def stats(
        self, paths: Iterable[str], watch: bool = False
    ) -> dict[str, tuple[int, int] | None]: ...

    def watch_node(self, path: str) -> RegistryNode | None: ...

    def acls(self, paths: Iterable[str]) -> dict[str, list[AclEntry] | None]: ...

    def put(self, nodes: Mapping[str, bytes]) -> dict[str, str]: ...

    def join(self, prefix: str, data: bytes) -> str: ...

    def owner_of(self, path: str) -> int | None: ...

    def read_data(self, path: str) -> bytes | None: ...

    def acquire(self, path: str, data: bytes, take_from: int | None = None) -> bool: ...

    def release(self, path: str) -> None: ...

    def start(self, transactions: list[Transaction]) -> Callable[[], list[WriteResult]]: ...

    def take_denied(self) -> set[str]: ...


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
