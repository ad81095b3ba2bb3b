"""Unit tests share one process: a test that configures logging (through the command line)
must not leave the next one writing to a stream pytest has closed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    yield
    structlog.reset_defaults()
