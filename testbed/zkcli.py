"""ZooKeeper's own command-line client (``org.apache.zookeeper.ZooKeeperMain``): the Java client
as Dubbo's providers run it, whose creates travel as ``create2`` (opcode 15), as Curator's do.

ZooKeeperMain prints a command's result on stderr (``Created /path``, ``Node already exists:
/path``) and its connection messages on stdout.
"""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Mapping
from pathlib import Path

import docker.errors
from docker.models.containers import Container

from testbed.engine import DockerEngine
from testbed.images import HOST_SYSTEM_DIRS, ensure_runtime_image
from testbed.jvm import LineProcess, docker_run_argv, jars, java_argv, start_in_container

MAIN = "org.apache.zookeeper.ZooKeeperMain"


def cli_jars() -> tuple[str, ...]:
    """The ZooKeeper client jars and what its commands need (commons-cli parses them)."""
    return jars("zookeeper", "zookeeper-jute", "commons-cli", "slf4j-api", "slf4j-nop")


def zk_cli(
    connect: str, *command: str, session_timeout_ms: int = 30000, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run one command (``zk_cli(connect, "create", "-e", "/path", "data")``) on this host.

    ZooKeeperMain exits without closing its session: an ephemeral node it created stays until
    the session times out (``session_timeout_ms``, bounded by the server's limits).
    """
    args = ["-server", connect, "-timeout", str(session_timeout_ms), *command]
    return subprocess.run(
        java_argv(cli_jars(), MAIN, args),
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


class ZooKeeperShell:
    """An interactive ZooKeeperMain fed commands on stdin: one session for all of them, so an
    ephemeral node lives until :meth:`quit` (which closes the session) or the process dies."""

    def __init__(self, process: LineProcess, container: Container | None = None) -> None:
        """Wraps ``process`` (running in ``container``, if given) once it has connected."""
        self.process = process
        self.container = container
        self._cursor = 0
        try:
            self.expect("WatchedEvent state:SyncConnected")
        except BaseException:
            self.close()
            raise

    @classmethod
    def on_host(cls, connect: str, session_timeout_ms: int = 30000) -> ZooKeeperShell:
        args = ["-server", connect, "-timeout", str(session_timeout_ms)]
        return cls(LineProcess(java_argv(cli_jars(), MAIN, args)))

    @classmethod
    def in_container(
        cls,
        engine: DockerEngine,
        connect: str,
        *,
        labels: Mapping[str, str],
        network: str | None = None,
        session_timeout_ms: int = 30000,
    ) -> ZooKeeperShell:
        """The shell in a ``FROM scratch`` container with the host's JVM mounted; ``network``
        as ``docker run --network`` (``container:<id>`` joins an app's network namespace)."""
        name = f"testbed-zkcli-{uuid.uuid4().hex[:8]}"
        args = ["-server", connect, "-timeout", str(session_timeout_ms)]
        argv = docker_run_argv(
            engine.url, ensure_runtime_image(engine.client), name,
            java_argv(cli_jars(), MAIN, args),
            mounts=[d for d in HOST_SYSTEM_DIRS if Path(d).exists()],
            labels=labels, publish_all=False, network=network,
        )  # fmt: skip
        return cls(*start_in_container(engine.client, argv, name))

    def run(self, command: str, expect: str, timeout: float = 30.0) -> str:
        """Send ``command``; the first later output line starting with ``expect``."""
        self.process.send(command)
        return self.expect(expect, timeout)

    def expect(self, prefix: str, timeout: float = 30.0) -> str:
        index, line = self.process.wait_for(
            lambda text: text.startswith(prefix), timeout, start=self._cursor
        )
        self._cursor = index + 1
        return line

    def quit(self, timeout: float = 30.0) -> None:
        """Close the session (its ephemeral nodes go at once) and wait for the exit."""
        self.process.send("quit")
        self.process.wait(timeout)
        self.close()

    def close(self) -> None:
        """Kill the process and remove its container, if still there (for cleanups)."""
        self.process.kill()
        if self.container is not None:
            with contextlib.suppress(docker.errors.NotFound):
                self.container.remove(force=True)
