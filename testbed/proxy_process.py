"""The ZooKeeper proxy as a real process (``testbed.proxy_main``), its JSON log read back."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from testbed.sidecar_process import SidecarProcess

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class ProxyProcess(SidecarProcess):
    """One proxy process; ``prefix`` runs it through another program (``nsenter …``)."""

    def __init__(self, log_path: Path, args: Sequence[str], prefix: Sequence[str] = ()) -> None:
        super().__init__(log_path, args)
        self.prefix = list(prefix)

    def start(self) -> ProxyProcess:
        env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
        argv = [*self.prefix, sys.executable, "-m", "testbed.proxy_main", *self.args]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(argv, stdout=log, stderr=log, env=env)
        return self
