"""Where provider ports are probed: a bounded TCP connect to each managed container endpoint.

In replace mode the provider's own registration is gone, so a provider that stops listening
while its container keeps running is only noticed here. An endpoint counts as unreachable
after several failed probes in a row, and as reachable again after one good probe.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable

from sidecar.model import Endpoint

FAILURES_TO_SUSPEND = 3
_MAX_PARALLEL = 16


class Prober:
    """Probes a set of container endpoints every ``period`` seconds on its own thread."""

    def __init__(self, period: float, on_change: Callable[[Endpoint], None]) -> None:
        self._period = period
        self._timeout = min(1.0, period)
        self._on_change = on_change
        self._lock = threading.Lock()
        self._targets: set[Endpoint] = set()
        self._failures: dict[Endpoint, int] = {}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="probe", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop probing; probes in flight end on their own (daemon threads, bounded)."""
        self._stopping.set()

    def watch(self, targets: Iterable[Endpoint]) -> None:
        """Probe exactly these endpoints from now on."""
        with self._lock:
            self._targets = set(targets)
            for gone in set(self._failures) - self._targets:
                del self._failures[gone]

    def unreachable(self) -> dict[Endpoint, str]:
        """Endpoints that failed their last FAILURES_TO_SUSPEND probes, with the reason."""
        with self._lock:
            return {
                e: f"does not answer on port {e.port} ({n} probes failed)"
                for e, n in self._failures.items()
                if n >= FAILURES_TO_SUSPEND
            }

    def _run(self) -> None:
        while not self._stopping.wait(self._period):
            with self._lock:
                targets = sorted(self._targets)
            # At most _MAX_PARALLEL probes at once, on daemon threads: a stop never waits.
            for start in range(0, len(targets), _MAX_PARALLEL):
                batch = targets[start : start + _MAX_PARALLEL]
                results: dict[Endpoint, bool] = {}
                workers = [
                    threading.Thread(target=self._probe, args=(e, results), daemon=True)
                    for e in batch
                ]
                for worker in workers:
                    worker.start()
                for worker in workers:
                    worker.join()
                if self._stopping.is_set():
                    return
                for endpoint in batch:
                    self._record(endpoint, results.get(endpoint, False))

    def _probe(self, endpoint: Endpoint, results: dict[Endpoint, bool]) -> None:
        results[endpoint] = self._answers(endpoint)

    def _answers(self, endpoint: Endpoint) -> bool:
        try:
            with socket.create_connection((endpoint.host, endpoint.port), timeout=self._timeout):
                return True
        except OSError:
            return False

    def _record(self, endpoint: Endpoint, answered: bool) -> None:
        with self._lock:
            if endpoint not in self._targets:
                return
            before = self._failures.get(endpoint, 0)
            after = 0 if answered else before + 1
            self._failures[endpoint] = after
        if (before >= FAILURES_TO_SUSPEND) != (after >= FAILURES_TO_SUSPEND):
            self._on_change(endpoint)
