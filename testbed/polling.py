"""Deadline-based polling and free-port helpers shared by the whole test harness."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_handed_out: set[int] = set()
_handed_out_lock = threading.Lock()


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float,
    interval: float = 0.05,
    message: str = "condition not met",
    retry_on: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``predicate`` until it returns a truthy value and return that value.

    Raises ``TimeoutError`` carrying ``message`` when ``timeout`` seconds pass first.
    Exceptions of the types in ``retry_on`` count as "not yet" (a daemon that is still coming
    up refuses connections); the last one is chained to the ``TimeoutError``. Any other
    exception propagates at once, so a predicate can abort the wait (e.g. the process died).
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = predicate()
        except retry_on as exc:
            last_error = exc
        else:
            if result:
                return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            detail = f" (last error: {last_error!r})" if last_error is not None else ""
            raise TimeoutError(f"{message} after {timeout:.1f} s{detail}") from last_error
        time.sleep(min(interval, remaining))


def free_port(host: str = "0.0.0.0") -> int:
    """Return a TCP port that is free on ``host`` now and was not returned before in this process.

    The port is released before returning, so another process could still take it; remembering
    the ports already handed out keeps one process (e.g. a ZooKeeper ensemble needing nine
    ports) from being given the same one twice.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
        with _handed_out_lock:
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise RuntimeError("could not find a free TCP port")
