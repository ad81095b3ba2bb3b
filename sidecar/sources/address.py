"""Watches the advertised address: reads the configured sources again every refresh period
and reports a change (or that no source answers) without blocking the reconcile loop."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from sidecar import advertise
from sidecar.config import Settings

# Until a first address is known, ask again sooner than the refresh period.
_FIRST_RETRY = 0.5


class AddressWatch:
    """Calls ``on_address`` with each new address, ``on_problem`` with each new failure."""

    def __init__(
        self,
        settings: Settings,
        environ: Mapping[str, str],
        current: advertise.AdvertiseHost | None,
        on_address: Callable[[advertise.AdvertiseHost], None],
        on_problem: Callable[[str], None],
    ) -> None:
        self._settings = settings
        self._environ = dict(environ)
        self._current = current
        self._on_address = on_address
        self._on_problem = on_problem
        self._problem = ""
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="advertise-address", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def _run(self) -> None:
        delay = _FIRST_RETRY
        while True:
            wait = self._settings.advertise_refresh_seconds if self._current else delay
            if self._stopping.wait(wait):
                return
            delay = min(delay * 2, self._settings.advertise_refresh_seconds)
            try:
                found = advertise.resolve(self._settings, self._environ)
            except advertise.AddressUnavailable as exc:
                if str(exc) != self._problem:
                    self._problem = str(exc)
                    self._on_problem(self._problem)
                continue
            self._problem = ""
            if found != self._current:
                self._current = found
                self._on_address(found)
