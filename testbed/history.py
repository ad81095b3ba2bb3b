"""What a watching ZooKeeper consumer saw, and when: every state of one node, or every child
list of one path, as kazoo's watches delivered them (a state that lasted less than a watch's
round trip may be skipped, as for any real consumer)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kazoo.client import KazooClient  # type: ignore[import-untyped,unused-ignore]
from kazoo.recipe.watchers import (  # type: ignore[import-untyped,unused-ignore]
    ChildrenWatch,
    DataWatch,
)


@dataclass(frozen=True)
class Seen:
    """One state: when it arrived (``time.perf_counter``), the data (None: no node) and the
    node's creation zxid (None: no node)."""

    at: float
    data: bytes | None
    czxid: int | None


class History:
    """Entries in arrival order, and a way to wait for one."""

    def __init__(self) -> None:
        self._entries: list[Any] = []
        self._changed = threading.Condition()

    def _add(self, entry: Any) -> None:
        with self._changed:
            self._entries.append(entry)
            self._changed.notify_all()

    @property
    def entries(self) -> list[Any]:
        with self._changed:
            return list(self._entries)

    def wait_for(self, matches: Callable[[Any], bool], timeout: float, start: int = 0) -> Any:
        """The first entry from index ``start`` on that ``matches``; TimeoutError if none
        arrives within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = next((e for e in self._entries[start:] if matches(e)), None)
                if found is not None:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no matching state seen within {timeout:.1f} s")
                self._changed.wait(remaining)


class NodeHistory(History):
    """Every state of the node at ``path``."""

    def __init__(self, client: KazooClient, path: str) -> None:
        super().__init__()
        DataWatch(client, path, self._seen)

    def _seen(self, data: bytes | None, stat: Any) -> None:
        czxid = int(stat.czxid) if stat is not None else None
        self._add(Seen(time.perf_counter(), data if stat is not None else None, czxid))


class ChildrenHistory(History):
    """Every child list of ``path`` (sorted), with its arrival time."""

    def __init__(self, client: KazooClient, path: str) -> None:
        super().__init__()
        ChildrenWatch(client, path, self._seen)

    def _seen(self, children: list[str]) -> None:
        self._add((time.perf_counter(), sorted(children)))
