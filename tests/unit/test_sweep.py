"""The periodic sweep: every registry path re-read within a bounded number of resyncs."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sidecar.periodic_sweep import SWEEP_RESYNCS as _SWEEP_RESYNCS
from sidecar.periodic_sweep import sweep_slice


@given(st.integers(min_value=0, max_value=5000), st.integers(min_value=0, max_value=10**6))
def test_every_path_is_read_within_one_sweep(size: int, start: int) -> None:
    """Whatever the registry's size and wherever the sweep stands, the next _SWEEP_RESYNCS
    slices read every path, and no slice is larger than its share."""
    everything = [f"/dubbo/i{n:05}/providers" for n in range(size)]
    share = -(-size // _SWEEP_RESYNCS)
    read: set[str] = set()
    for _ in range(_SWEEP_RESYNCS + 1):  # one more: the first slice may begin mid-way
        part, start = sweep_slice(everything, start)
        assert len(part) <= share
        read.update(part)
    assert read == set(everything)


def test_sweep_goes_on_when_the_registry_shrinks() -> None:
    """A registry that lost paths since the last slice is swept on from the start."""
    part, after = sweep_slice([f"p{n}" for n in range(600)], 590)
    assert part == [f"p{n}" for n in range(590, 600)]
    part, _ = sweep_slice([f"p{n}" for n in range(300)], after)
    assert part == [f"p{n}" for n in range(0, 5)]
