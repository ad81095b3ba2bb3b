"""The coordination recipes' behaviour (sidecar/coordination/), written once and run alone,
without the loop, on the in-memory twin (tests/unit/test_coordination.py) and on a real
ZooKeeper (tests/integration/test_coordination.py). Each case's docstring says what holds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from sidecar.coordination.election import Election
from sidecar.coordination.lease import Lease, leases
from sidecar.coordination.membership import Membership
from sidecar.coordination.publishing import Publisher
from sidecar.model import RegistryNode
from sidecar.protocols import Registry
from testbed.polling import wait_until

# Real watches fire on kazoo's thread: polled for at most this long.
_TOLD_WITHIN = 10.0


@dataclass
class Client:
    """One client's session, and the paths its watches reported."""

    registry: Registry
    changed: list[str] = field(default_factory=list)

    @property
    def session(self) -> int:
        return self.registry.session_id

    def told(self, path: str) -> bool:
        return path in self.changed


class Clients(Protocol):
    """Sessions on one tree, as the twin or a real ZooKeeper gives them."""

    def new(self) -> Client:
        """Another client, connected, in its own session."""
        ...

    def forbid_writes(self, path: str) -> None:
        """Create ``path`` (and its parents) as a node no client may write."""
        ...


def _never(_: int) -> bool:
    return False


def lease_is_held_by_one_session_and_taken_only_from_a_holder_given_up(
    clients: Clients, root: str
) -> None:
    """A free lease is held by the first session; another only stands by (told who holds it)
    until it may take the lease from its holder (say, its session is gone): then it holds it,
    with its own data."""
    one, two = clients.new(), clients.new()
    path = f"{root}/leases/host"
    mine, theirs = Lease(one.registry, path), Lease(two.registry, path)
    assert mine.hold(one.session, b"one", _never) == one.session
    assert theirs.hold(two.session, b"two", _never) == one.session
    assert theirs.holder_data() == b"one"
    assert theirs.hold(two.session, b"two", lambda holder: holder == one.session) == two.session
    assert mine.holder_data() == b"two"
    assert mine.hold(one.session, b"one", _never) == two.session


def lease_released_or_gone_with_its_session_is_free_and_its_waiter_is_told(
    clients: Clients, root: str
) -> None:
    """A session standing by is told when the lease goes (given up, or gone with its holder's
    session), and then holds it; ``leases`` lists each lease under a parent with its holder
    and data."""
    one, two, three = clients.new(), clients.new(), clients.new()
    path = f"{root}/leases/host"
    Lease(one.registry, path).hold(one.session, b"one", _never)
    waiting = Lease(two.registry, path)
    assert waiting.hold(two.session, b"two", _never) == one.session
    Lease(one.registry, path).release()
    wait_until(lambda: two.told(path), _TOLD_WITHIN, message="the waiter was not told")
    assert waiting.hold(two.session, b"two", _never) == two.session
    Lease(three.registry, f"{root}/leases/app-x").hold(three.session, b"three", _never)
    assert leases(one.registry, f"{root}/leases") == {
        "host": (two.session, b"two"),
        "app-x": (three.session, b"three"),
    }
    one.changed.clear()
    three.registry.close()
    wait_until(lambda: one.told(f"{root}/leases"), _TOLD_WITHIN, message="not told")
    assert leases(one.registry, f"{root}/leases") == {"host": (two.session, b"two")}


def _counts(ballot: RegistryNode) -> str | None:
    return None if ballot.data != b"junk" else "junk"


def election_is_led_by_the_first_ballot_each_other_waits_behind_the_one_ahead(
    clients: Clients, root: str
) -> None:
    """The first ballot leads; each later one waits behind the nearest ballot ahead of it
    (watched: told when it goes); when that ballot is cancelled, or goes with its session,
    the next leads."""
    one, two, three = clients.new(), clients.new(), clients.new()
    path = f"{root}/election"
    first, second, third = (
        Election(c.registry, path, name.encode())
        for c, name in ((one, "one"), (two, "two"), (three, "three"))
    )
    for election, client in ((first, one), (second, two), (third, three)):
        election.join(client.session, lambda _: True)
    assert first.stand(_counts, lambda _: None).before is None
    before = third.stand(_counts, lambda _: None).before
    assert before is not None
    assert before.path == second.ballot
    assert before.data == b"two"
    standing = second.stand(_counts, lambda _: None)
    assert standing.before is not None
    assert standing.before.path == first.ballot
    assert standing.settled
    ahead = first.ballot
    first.cancel()
    wait_until(lambda: two.told(ahead), _TOLD_WITHIN, message="not told")
    assert second.stand(_counts, lambda _: None).before is None
    two.registry.close()
    wait_until(lambda: three.told(second.ballot), _TOLD_WITHIN, message="not told")
    assert third.stand(_counts, lambda _: None).before is None


def election_keeps_one_ballot_per_session_and_passes_over_ballots_that_do_not_count(
    clients: Clients, root: str
) -> None:
    """Joining again in the same session keeps its ballot (extra ones it holds go); a ballot
    ahead that does not count is passed over, told to the caller, and cannot stop the
    election."""
    one, two = clients.new(), clients.new()
    path = f"{root}/election"
    mine = Election(one.registry, path, b"one")
    mine.join(one.session, lambda _: True)
    held = mine.ballot
    extra = one.registry.join(f"{path}/n_", b"one")
    mine.join(one.session, lambda _: True)
    assert mine.ballot == held
    assert [n.path for n in one.registry.nodes_under(path)] == [held]
    assert mine.holds(one.session)
    mine.cancel()
    assert not mine.ballot
    assert one.registry.owner_of(extra) is None
    junk = two.registry.join(f"{path}/n_", b"junk")
    mine.join(one.session, lambda _: True)
    ignored: list[dict[str, str]] = []
    assert mine.stand(_counts, ignored.append).before is None
    assert ignored[-1] == {junk: "junk"}


def membership_holds_the_member_node_and_writes_only_what_changed(
    clients: Clients, root: str
) -> None:
    """A member node is held in the member's session with its data, written again only when
    the data (or the session) changes; another session of the same member takes it over."""
    one, two, reader = clients.new(), clients.new(), clients.new()
    path = f"{root}/members/m1"
    member = Membership(one.registry, path)
    assert member.keep(one.session, b"a") == ""
    assert reader.registry.owner_of(path) == one.session
    version = _version(reader.registry, path)
    assert member.keep(one.session, b"a") == ""
    assert _version(reader.registry, path) == version
    assert member.keep(one.session, b"b") == ""
    assert reader.registry.read_data(path) == b"b"
    assert reader.registry.owner_of(path) == one.session
    assert Membership(two.registry, path).keep(two.session, b"c") == ""
    assert reader.registry.owner_of(path) == two.session
    assert reader.registry.read_data(path) == b"c"


def publisher_writes_what_changed_and_retries_a_failed_group_later_each_time(
    clients: Clients, root: str
) -> None:
    """Only nodes whose data changed since published are written; a group whose node cannot
    be written holds back no other, is reported, and is due again later, twice as late each
    time it fails again."""
    one, reader = clients.new(), clients.new()
    good, bad = f"{root}/work/good", f"{root}/work/bad"
    clients.forbid_writes(bad)
    publisher = Publisher(one.registry)
    groups = {"good": {good: b"1", f"{good}/1": b"2"}, "bad": {bad: b"x"}}
    written, failing = publisher.publish(groups, now=0.0)
    assert written == 2
    assert set(failing) == {"bad"}
    assert failing["bad"]
    assert reader.registry.read_data(good) == b"1"
    assert reader.registry.read_data(f"{good}/1") == b"2"
    version = _version(reader.registry, good)
    assert publisher.due("good", 0.0)
    assert not publisher.due("bad", 0.4)
    assert publisher.next_retry({"bad", "good"}) == 0.5
    assert publisher.next_retry({"good"}) > 1e9
    assert publisher.publish({"good": {good: b"1", f"{good}/1": b"3"}}, now=0.1)[0] == 1
    assert _version(reader.registry, good) == version
    assert publisher.publish({"bad": {bad: b"x"}}, now=0.5) == (0, {"bad": failing["bad"]})
    assert publisher.next_retry({"bad"}) == 1.5


def _version(registry: Registry, path: str) -> int:
    found = registry.stats([path])[path]
    assert found is not None
    return found[1]


CASES: list[Callable[[Clients, str], None]] = [
    lease_is_held_by_one_session_and_taken_only_from_a_holder_given_up,
    lease_released_or_gone_with_its_session_is_free_and_its_waiter_is_told,
    election_is_led_by_the_first_ballot_each_other_waits_behind_the_one_ahead,
    election_keeps_one_ballot_per_session_and_passes_over_ballots_that_do_not_count,
    membership_holds_the_member_node_and_writes_only_what_changed,
    publisher_writes_what_changed_and_retries_a_failed_group_later_each_time,
]
