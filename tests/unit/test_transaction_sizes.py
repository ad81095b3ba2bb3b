"""Transactions are bounded by what the servers accept, in bytes: a request's size is known
exactly before it is sent; batches stay under jute.maxbuffer whatever their count; a
transaction too large for the servers travels alone and is never sent; one the servers drop
travels alone from then on. tests/integration/test_registry.py sends them to ZooKeeper."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from kazoo.protocol import serialization as jute
from kazoo.security import CREATOR_ALL_ACL, OPEN_ACL_UNSAFE

from sidecar.model import Check, Create, Delete, Op, SetData, Transaction
from sidecar.registry.outcomes import (
    DROPS_ALONE,
    SUSPECT_BYTES,
    Drops,
    acl_size,
    batches,
    request_size,
)

paths = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40).map(
    lambda s: "/" + s
)
data = st.binary(max_size=300)
ops = st.one_of(
    st.builds(Create, paths, data, st.booleans()),
    st.builds(SetData, paths, data, st.integers(-1, 9)),
    st.builds(Delete, paths, st.integers(-1, 9)),
    st.builds(Check, paths, st.integers(-1, 9)),
)
transactions = st.lists(ops, min_size=1, max_size=4).map(lambda o: Transaction(tuple(o)))


def _kazoo(op: Op, acl: list[object]) -> object:
    match op:
        case Create(path=path, data=data, persistent=persistent):
            return jute.Create(path, data, acl, 0 if persistent else 1)
        case SetData(path=path, data=data, version=version):
            return jute.SetData(path, data, version)
        case Delete(path=path, version=version):
            return jute.Delete(path, version)
        case Check(path=path, version=version):
            return jute.CheckVersion(path, version)
    raise AssertionError(op)


@given(st.lists(transactions, min_size=1, max_size=4), st.booleans())
def test_a_requests_size_is_what_kazoo_sends(found: list[Transaction], digest: bool) -> None:
    """The size computed before sending is the body kazoo writes: xid, type and the multi."""
    acl = CREATOR_ALL_ACL if digest else OPEN_ACL_UNSAFE
    multi = jute.Transaction([_kazoo(op, acl) for t in found for op in t.ops])
    assert request_size(found, acl_size(acl)) == 8 + len(multi.serialize())


def _create(size: int, name: str = "n") -> Transaction:
    return Transaction((Delete(f"/p/{name}", 0), Create(f"/p/{name}", b"x" * size)))


@given(st.lists(st.integers(0, 60_000), min_size=1, max_size=40))
def test_batches_stay_under_the_budget_and_keep_the_order(sizes: list[int]) -> None:
    """Whatever the transactions' sizes, every batch's request fits the budget, the batches
    hold every transaction once, in order, and one that alone is over comes alone with why."""
    budget = 100_000
    found = [_create(size, str(i)) for i, size in enumerate(sizes)]
    seen = []
    for batch, size, too_large in batches(found, budget, 27, Drops()):
        assert size == request_size(batch, 27)
        assert (too_large is not None) == (size > budget)
        assert size <= budget or len(batch) == 1
        seen += batch
    assert seen == found


def test_thirty_registrations_of_eight_kilobytes_fit_in_few_requests() -> None:
    """Thirty rewrites of URLs with a few hundred methods (8 KB names, their marker and record
    as large again): no request over the servers' 1 MB, as few as that allows."""
    found = [_create(24_000, str(i)) for i in range(30)]
    sent = list(batches(found, 0xFFFFF, 27, Drops()))
    assert all(size <= 0xFFFFF and too_large is None for _, size, too_large in sent)
    assert len(sent) == 1


def test_a_dropped_batch_travels_apart_then_alone_is_left_alone() -> None:
    """The servers close the connection while a large batch is in flight: its transactions
    travel alone from then on; one dropped alone again and again is too large for them, the
    others go on."""
    drops = Drops()
    big, small = _create(SUSPECT_BYTES), _create(10, "small")
    drops.dropped([big, small], request_size([big, small], 27))
    assert [len(b) for b, _, _ in batches([big, small], 0xFFFFF, 27, drops)] == [1, 1]
    for _ in range(DROPS_ALONE):
        drops.dropped([big], request_size(big, 27))
    sent = list(batches([big, small], 0xFFFFF, 27, drops))
    assert [too_large is not None for _, _, too_large in sent] == [True, False]
    drops.settled(small)
    assert not drops.alone(small)


def test_a_small_request_on_a_dropped_connection_is_not_suspected() -> None:
    """A connection that closes under a small request says nothing about its size."""
    drops = Drops()
    small = _create(10)
    drops.dropped([small, small], request_size([small, small], 27))
    assert not drops.alone(small)
