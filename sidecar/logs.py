"""Logging: structlog, JSON lines when stderr is not a terminal, readable lines when it is."""

from __future__ import annotations

import logging
import sys
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
