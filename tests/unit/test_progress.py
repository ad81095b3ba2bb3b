"""Progress lines of long work: some, not silence, and not a flood."""

from __future__ import annotations

from sidecar.logs import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_long_work_says_how_it_goes_every_five_seconds_and_quick_work_says_nothing() -> None:
    """Work that ends within 5 s prints no progress line; longer work prints one line each
    5 s with how far it got, however often it reports."""
    clock, lines = Clock(), []
    progress = Progress(lambda phase, done, total: lines.append((phase, done, total)), clock)
    for done in range(1, 10):
        clock.now += 0.5
        progress("reading registrations", done, 1000)
    assert lines == []
    for done in range(10, 41):
        clock.now += 0.5
        progress("reading registrations", done, 1000)
    assert lines == [("reading registrations", n, 1000) for n in (10, 20, 30, 40)]
