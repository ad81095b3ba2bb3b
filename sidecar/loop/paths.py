"""Which paths the loop reads: the roots and their mirrors, the paths known under each root,
the periodic sweep over all of them, and which paths mention which containers or addresses
(so that a container event re-reads only those). Owned by the loop thread."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from sidecar import labels
from sidecar.config import Settings
from sidecar.model import Container
from sidecar.periodic_sweep import sweep_slice
from sidecar.scope import Scope


class Roots:
    """The registry roots, which hold instances, and each root's mirror counterpart."""

    def __init__(self, settings: Settings) -> None:
        self.roots = settings.root
        self.services_roots = settings.services_root
        self.all = (*settings.root, *settings.services_root)
        # Each root's mirror counterpart: only with one root of each kind.
        self._mirrors: dict[str, str] = {}
        if len(settings.root) == 1 and len(settings.services_root) <= 1:
            self._mirrors = {settings.root[0]: settings.mirror_root} | dict(
                zip(settings.services_root, [settings.mirror_services_root], strict=False)
            )
        # Mirror paths are read once mirror mode is the default or a container asks for it.
        self.mirrors_in_use = settings.mode == "mirror"

    def mirror_of(self, parent: str) -> str | None:
        """The mirror root's counterpart of a path (once mirrors are in use)."""
        return self.mirror_path(parent) if self.mirrors_in_use else None

    def mirror_path(self, parent: str) -> str | None:
        """The mirror root's counterpart of a path, in use or not."""
        root = self.root_of(parent)
        return self._mirrors[root] + parent.removeprefix(root) if root in self._mirrors else None

    def source_of(self, path: str) -> str | None:
        """The path a mirror path mirrors, or None for any other path."""
        if not self.mirrors_in_use:
            return None
        for root, mirror in self._mirrors.items():
            if path.startswith(mirror + "/"):
                return root + path.removeprefix(mirror)
        return None

    def is_mirror(self, path: str) -> bool:
        return self.source_of(path) is not None

    def use_mirrors_if_asked(self, containers: Iterable[Container], scope: Scope) -> bool:
        """Start reading mirror paths once a container of this scope asks for mirror mode;
        True if that just happened (everything must be read again). Never stops: mirrors
        written earlier must still be followed."""
        if self.mirrors_in_use:
            return False
        for container in containers:
            try:
                asked = labels.parse(container.labels).mode == "mirror"
            except labels.InvalidLabels:
                continue
            if asked and scope.excludes(container.id) is None:
                self.mirrors_in_use = True
                return True
        return False

    def root_of(self, path: str) -> str | None:
        for root in self.all:
            if path.startswith(root + "/"):
                return root
        return None

    def holds_instances(self, path: str) -> bool:
        """Whether ``path`` (or the path it mirrors) is an application's instance path."""
        return self.root_of(self.source_of(path) or path) in self.services_roots


class PathIndex:
    """The paths known under each root, the sweep's position, and which paths mention which
    keys (container ids, and addresses that are or may become this host's)."""

    def __init__(self, roots: Iterable[str]) -> None:
        self.known: dict[str, set[str]] = {root: set() for root in roots}
        self._swept_up_to = 0
        self._paths_by_key: dict[str, set[str]] = defaultdict(set)
        self._keys_by_path: dict[str, set[str]] = {}
        # Paths whose last plan left something unsettled (a write, a refusal, a wait, a retry):
        # a periodic resync plans them again even when nothing they show has changed.
        self.restless: set[str] = set()

    def paths_of(self, keys: Iterable[str]) -> set[str]:
        return {path for key in keys for path in self._paths_by_key.get(key, ())}

    def index(self, path: str, keys: set[str]) -> None:
        """``path`` mentions exactly these keys now."""
        self.forget(path)
        if keys:  # most paths mention none: an empty set each would cost 4 MB per 20,000
            self._keys_by_path[path] = keys
        for key in keys:
            self._paths_by_key[key].add(path)

    def forget(self, path: str) -> None:
        for key in self._keys_by_path.pop(path, ()):
            self._paths_by_key[key].discard(path)
            if not self._paths_by_key[key]:
                del self._paths_by_key[key]

    def commit(self, listed: dict[str, set[str]]) -> set[str]:
        """Each re-listed root's paths, now that the pass succeeded; returns the paths gone."""
        gone: set[str] = set()
        for root, current in listed.items():
            gone |= self.known[root] - current
            self.known[root] = current
        for path in gone:
            self.forget(path)
        self.restless -= gone
        return gone

    def planned(self, path: str, settled: bool) -> None:
        """``path`` was just planned: everything in it ``settled``, or not."""
        if settled:
            self.restless.discard(path)
        else:
            self.restless.add(path)

    def next_sweep_slice(self) -> set[str]:
        everything = sorted(path for paths in self.known.values() for path in paths)
        part, self._swept_up_to = sweep_slice(everything, self._swept_up_to)
        return set(part)
