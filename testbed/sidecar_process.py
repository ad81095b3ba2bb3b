"""The sidecar as a real process (``python -m sidecar run``), with its JSON log read back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from testbed.polling import wait_until


class SidecarProcess:
    """One ``dubbo-sidecar run`` process logging JSON lines to a file."""

    def __init__(
        self,
        log_path: Path,
        args: Sequence[str],
        env: dict[str, str] | None = None,
        prefix: Sequence[str] = (),
    ):
        """``prefix``: a command the process runs under (e.g. ``nsenter --net=...``)."""
        self.log_path = log_path
        self.args = list(args)
        self.env = env
        self.prefix = list(prefix)
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> SidecarProcess:
        env = {**os.environ, **(self.env or {})}
        command = [sys.executable, "-m", "sidecar", "run", "--log-format", "json", *self.args]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [*self.prefix, *command],
                stdout=log,
                stderr=log,
                env=env,
            )
        return self

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """Every JSON log line so far (those named ``name`` only, if given)."""
        if not self.log_path.exists():
            return []
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if name is None or event.get("event") == name:
                found.append(event)
        return found

    def wait_for_event(self, name: str, count: int = 1, timeout: float = 30.0) -> dict[str, Any]:
        """The ``count``-th log line named ``name``; fails early if the process exits."""

        def seen() -> dict[str, Any] | None:
            events = self.events(name)
            if len(events) >= count:
                return events[count - 1]
            if not self.running:
                raise RuntimeError(f"sidecar exited; log:\n{self.log_tail()}")
            return None

        try:
            return wait_until(seen, timeout)
        except TimeoutError:
            raise TimeoutError(
                f"sidecar never logged {name!r} x{count} in {timeout} s:\n{self.log_tail()}"
            ) from None

    def logged(self, name: str, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Every log line named ``name``, once there are at least ``count`` of them.

        A decision is logged after its write commits, so a change a test saw in the registry
        may still be on its way to the log.
        """
        self.wait_for_event(name, count, timeout)
        return self.events(name)

    def wait(self, timeout: float) -> int:
        """The exit code, once the process has ended by itself within ``timeout``."""
        assert self._process is not None
        return self._process.wait(timeout=timeout)

    @property
    def ops_url(self) -> str:
        """Where its operations listener answers (it logs the address at start)."""
        return "http://" + str(self.wait_for_event("ops_listening")["address"])

    @property
    def session(self) -> int:
        """The ZooKeeper session of its first connection."""
        return int(self.wait_for_event("zookeeper_connected")["session"], 16)

    def terminate(self, timeout: float = 10.0, sig: signal.Signals = signal.SIGTERM) -> int:
        """SIGTERM (or ``sig``), then wait for the exit code."""
        return self._signal_and_wait(sig, timeout)

    def kill(self) -> int:
        return self._signal_and_wait(signal.SIGKILL, 10.0)

    def _signal_and_wait(self, sig: signal.Signals, timeout: float) -> int:
        assert self._process is not None
        if self._process.poll() is None:
            self._process.send_signal(sig)
        return self._process.wait(timeout=timeout)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> SidecarProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.running:
            self.kill()
