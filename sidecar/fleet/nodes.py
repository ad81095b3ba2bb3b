"""What counts in the fleet's coordination paths, and what is ignored there (pure rules, and
their one report): anyone who can write the tree can write these paths, so only nodes of
the form the sidecar writes, held by the session they name, are members or ballots."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping

from sidecar.fleet.routes import Member
from sidecar.model import RegistryNode
from sidecar.quoting import shorten

_BALLOT = re.compile(r"n_\d{10}")
# What a member id may be: the engine's id and the lease's name (sidecar/scope.py).
_MEMBER_ID = re.compile(r"[^/\x00]{1,400}")


def ballot_problem(node: RegistryNode) -> str | None:
    """Why a node under the election path is no ballot (None: it is one in form): a ballot
    is an ephemeral sequential node ``n_<ten digits>`` whose data names its member."""
    if not _BALLOT.fullmatch(node.name):
        return "not a ballot: the sidecar's are named n_ and ten digits"
    if node.owner == 0:
        return "persistent: a ballot lives and dies with its member's session"
    if ballot_member(node) is None:
        return "its data names no member"
    return None


def ballot_member(node: RegistryNode) -> str | None:
    """The member id a ballot's data names (None: none)."""
    try:
        member = node.data.decode()
    except UnicodeDecodeError:
        return None
    return member if _MEMBER_ID.fullmatch(member) else None


def read_member(node: RegistryNode) -> Member | str:
    """The member a member node says it is, or why it is none: the node must be ephemeral and
    held by the session its data names."""
    if node.owner == 0:
        return "persistent: a member node lives and dies with its member's session"
    try:
        doc = json.loads(node.data)
        member = Member(
            node.name,
            int(str(doc["session"]), 16),
            frozenset(str(a) for a in doc["hosts"]),
            frozenset(str(a) for a in doc["containers"]),
        )
    except (ValueError, KeyError, TypeError, RecursionError, OverflowError):
        return "not a member document"
    if member.session != node.owner:
        return f"names session 0x{member.session:x}, but session 0x{node.owner:x} holds it"
    return member


class Problems:
    """Problems with nodes, by kind (nodes ignored, work not written), each reported once
    while it lasts."""

    def __init__(self, report: Callable[[str, str], None], count: Callable[[int], None]) -> None:
        """``report(node, problem)`` says why a node is ignored; ``count`` is told how many
        are ignored now."""
        self._report = report
        self._count = count
        self._found: dict[str, dict[str, str]] = {}  # kind -> node -> problem

    def found(self, kind: str, problems: Mapping[str, str]) -> None:
        """The nodes of this kind ignored now (the earlier ones that are not, are not)."""
        before = self._found.get(kind, {})
        for node, problem in problems.items():
            if before.get(node) != problem:
                self._report(node, shorten(problem))
        self._found[kind] = dict(problems)
        self._count(sum(len(nodes) for nodes in self._found.values()))

    def add(self, kind: str, node: str, problem: str) -> None:
        """One more node of this kind ignored."""
        self.found(kind, {**self._found.get(kind, {}), node: problem})

    def clear(self, kind: str, node: str) -> None:
        """This node counts again (or is gone)."""
        found = self._found.get(kind, {})
        if node in found:
            self.found(kind, {n: p for n, p in found.items() if n != node})

    @property
    def nodes(self) -> dict[str, str]:
        return {n: p for nodes in self._found.values() for n, p in nodes.items()}
