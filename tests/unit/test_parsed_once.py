"""A registration is parsed once per read: a pass's steps (observe's claims, the planner, a
fleet member's choice of nodes) share the parsed value of each node name and marker, and
nothing parsed is kept after the read. On in-memory twins, counting the parser's calls."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable
from typing import TypeVar

import pytest

from sidecar import ownership, urls
from sidecar.loop.dirty import Work
from sidecar.model import Endpoint
from sidecar.ownership import Marker
from sidecar.plan import parsing
from tests.unit.harness import ORIGINAL, PROVIDERS, Harness, rewritten
from tests.unit.scenarios import url_name

ELSEWHERE = url_name("10.9.9.9")  # another host's container
OTHERS = url_name("10.9.9.8")  # rewritten by another host's sidecar
OTHERS_REWRITE = url_name("198.51.100.7", 31000)
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> tuple[Counter[str], Counter[bytes]]:
    """Calls of the name parser per name, of the marker parser per data."""
    names: Counter[str] = Counter()
    markers: Counter[bytes] = Counter()
    monkeypatch.setattr(urls, "parse", _counting(urls.parse, names))
    monkeypatch.setattr(parsing, "read_marker", _counting(ownership.read_marker, markers))
    return names, markers


def _counting(function: Callable[[K], V], calls: Counter[K]) -> Callable[[K], V]:
    def counted(key: K) -> V:
        calls[key] += 1
        return function(key)

    return counted


def _path_of_three(twin: Harness) -> bytes:
    """The path holds a local original, another host's and another host's rewrite (whose
    marker names its original); returns that rewrite's data."""
    marker = Marker(OTHERS, Endpoint("10.9.9.8", 20880), "c" * 64, "OTHER@host", 0x3003)
    twin.registry.add(f"{PROVIDERS}/{ORIGINAL}")
    twin.registry.add(f"{PROVIDERS}/{ELSEWHERE}")
    twin.registry.add(f"{PROVIDERS}/{OTHERS_REWRITE}", marker.encode(), owner=0x3003)
    return marker.encode()


def test_each_name_and_marker_is_parsed_once_in_a_pass(
    parses: tuple[Counter[str], Counter[bytes]],
) -> None:
    """A first pass (claims, then the plan that rewrites) parses each name of the path and
    each marker once; so does a later full pass reading the path again."""
    names, markers = parses
    twin = Harness()
    data = _path_of_three(twin)
    twin.start()
    assert names[ORIGINAL] == names[ELSEWHERE] == 1
    assert max(names.values()) == 1
    assert markers[data] == 1
    assert twin.providers() == sorted([rewritten(), ELSEWHERE, OTHERS_REWRITE])
    names.clear()
    markers.clear()
    twin.run(Work(full=True, lease=True, all_containers=True))
    assert names[ELSEWHERE] == 1  # read again: parsed again, nothing kept since
    assert max(names.values()) == 1
    assert max(markers.values()) == 1


def test_a_fleet_member_parses_what_it_chose_to_read_once(
    parses: tuple[Counter[str], Counter[bytes]],
) -> None:
    """A fleet member parses a name to choose whether to read the node, and plans with that
    parsed value: a node it reads is parsed once, one it leaves unread once too."""
    names, _ = parses
    twin = Harness(options={"fleet": True})
    twin.start()  # the inventory: the local container's address concerns this member
    _path_of_three(twin)
    names.clear()
    decisions = twin.reconciler.plan([PROVIDERS], twin.registry.session)
    assert [d.node.name for d in decisions] == [ORIGINAL]  # other hosts' nodes: not read
    assert names[ORIGINAL] == names[ELSEWHERE] == 1
    assert max(names.values()) == 1
