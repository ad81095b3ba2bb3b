"""Logging: structlog, JSON lines when stderr is not a terminal, readable lines when it is; and
the progress of long work (the first read of a large registry), a line every few seconds."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Literal

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}  # fmt: skip


def configure(
    fmt: Literal["auto", "json", "console"], level: Literal["debug", "info", "warning", "error"]
) -> None:
    """Set up structlog for the whole process; kazoo's and docker's own loggers stay quiet."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    # kazoo logs every reconnect attempt at INFO/WARNING; the sidecar reports state changes itself.
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)


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
