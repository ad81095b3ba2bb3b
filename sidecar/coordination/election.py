"""An election: sequential ephemeral ballots; the first that counts leads, the others queue."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sidecar.model import RegistryNode
from sidecar.protocols import Coordination

# Reads of the ballots in one standing at most, while the ballot ahead goes as it is read.
_READS = 5


@dataclass(frozen=True)
class Standing:
    """Where a ballot stands: behind ``before``, the nearest live ballot ahead that counts
    (None: it leads). Not ``settled``: ballots ahead went faster than they were read, and
    ``before`` is the last one seen."""

    before: RegistryNode | None
    settled: bool = True


class Election:
    """One contender's ballot in the election under ``path``, named by ``identifier``."""

    def __init__(self, coordination: Coordination, path: str, identifier: bytes) -> None:
        self._coordination = coordination
        self.path = path
        self._identifier = identifier
        self.ballot = ""  # the path of the ballot held ("": none)

    def join(self, session: int, valid: Callable[[RegistryNode], bool]) -> None:
        """Hold one ballot: a ``valid`` one ``session`` holds already is kept (a process
        restarted within its session timeout resumes the session, and with it its ballot),
        any more are released; without one, a new ballot joins at the end."""
        ballots = self._coordination.nodes_under(self.path, watch=False)
        held = sorted(n.path for n in ballots if n.owner == session and valid(n))
        for extra in held[1:]:
            self._coordination.release(extra)
        if held:
            self.ballot = held[0]
        else:
            self.ballot = self._coordination.join(f"{self.path}/n_", self._identifier)

    def holds(self, session: int) -> bool:
        """Whether ``session`` still holds the ballot (watched)."""
        return self._coordination.owner_of(self.ballot) == session

    def stand(
        self,
        counts: Callable[[RegistryNode], str | None],
        ignored: Callable[[dict[str, str]], None],
    ) -> Standing:
        """Where the ballot stands. ``counts(ballot)`` says why a ballot ahead does not count
        (None: it does); those passed over are told to ``ignored`` at each read. The ballot
        waited behind is watched."""
        mine = self.ballot.rpartition("/")[2]
        before = None
        for _ in range(_READS):
            ballots = self._coordination.nodes_under(self.path, watch=False)
            ahead = sorted((b for b in ballots if b.name < mine), key=lambda b: b.name)
            before, passed = _nearest(ahead, counts)
            ignored(passed)
            if before is None:
                return Standing(None)
            if self._coordination.owner_of(before.path) == before.owner:
                return Standing(before)
            # Gone already (its watch is set now): look again.
        return Standing(before, settled=False)

    def cancel(self) -> None:
        """Give the ballot up."""
        if self.ballot:
            self._coordination.release(self.ballot)
            self.ballot = ""


def _nearest(
    ahead: list[RegistryNode], counts: Callable[[RegistryNode], str | None]
) -> tuple[RegistryNode | None, dict[str, str]]:
    """The nearest ballot ahead that counts, and why those nearer than it do not."""
    ignored: dict[str, str] = {}
    for ballot in reversed(ahead):
        problem = counts(ballot)
        if problem is None:
            return ballot, ignored
        ignored[ballot.path] = problem
    return None, ignored
