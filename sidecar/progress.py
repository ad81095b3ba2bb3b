"""Progress of long work (the first read of a large registry): a line every few seconds."""

from __future__ import annotations

import time
from collections.abc import Callable


class Progress:
    """Passes progress on at most every few seconds (never for work that finishes quickly)."""

    EVERY = 5.0

    def __init__(
        self,
        progress: Callable[[str, int, int], None] | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._progress = progress
        self._clock = clock
        self._next = clock() + self.EVERY

    def __call__(self, phase: str, done: int, total: int) -> None:
        if self._progress is not None and self._clock() >= self._next:
            self._next = self._clock() + self.EVERY
            self._progress(phase, done, total)
