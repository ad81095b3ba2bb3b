"""A private rootful Podman for the tests: its own storage, network, events file and
Docker-compatible API socket, an image made with ``podman import``, containers run with the
``podman`` command as users run them; everything is removed at the end."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import docker
import docker.errors

from testbed.engine import LABEL
from testbed.images import DUBBO_PORT, TESTBED_DIR, python_mounts
from testbed.polling import wait_until

IMAGE = "localhost/dubbo-nat-sidecar-testbed/runtime:podman"
# Rootful Podman here has no systemd or journald and no CAP_SYS_RESOURCE: cgroupfs, events
# in a file, and limits no higher than this process's own (also for a pod's infra container).
_ENGINE_FLAGS = ("--cgroup-manager", "cgroupfs", "--events-backend", "file")
_CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
"""
_ROOTFS_DIRS = {"tmp": 0o1777, "proc": 0o555, "sys": 0o555, "dev": 0o755, "run": 0o755,
                "root": 0o700}  # fmt: skip


class PodmanError(RuntimeError):
    """A podman command failed; the message has its standard error."""


class Podman:
    """One private Podman: the command line on its storage, and its API service."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.socket = work / "podman.sock"
        self.network = ""
        self._flags = (
            "--root", str(work / "root"), "--runroot", str(work / "run"),
            "--tmpdir", str(work / "tmp"), "--network-config-dir", str(work / "networks"),
            *_ENGINE_FLAGS,
        )  # fmt: skip
        self._service: subprocess.Popen[bytes] | None = None
        self._env = {**os.environ, "CONTAINERS_CONF": str(work / "containers.conf")}

    @property
    def url(self) -> str:
        """The service's Docker-compatible API, as ``--docker-url`` takes it."""
        return f"unix://{self.socket}"

    def cli(self, *args: str, timeout: float = 60) -> str:
        """Run ``podman <args>`` on this storage; its standard output, stripped."""
        done = subprocess.run(["podman", *self._flags, *args], capture_output=True, text=True,
                              env=self._env, timeout=timeout, check=False)  # fmt: skip
        if done.returncode != 0:
            raise PodmanError(f"podman {' '.join(args[:3])}: {done.stderr.strip()}")
        return done.stdout.strip()

    def start(self) -> None:
        """Start ``podman system service`` on the socket, an image and a network of its own."""
        (self.work / "containers.conf").write_text(_CONTAINERS_CONF)
        log = (self.work / "service.log").open("ab")
        with log:
            self._service = subprocess.Popen(
                ["podman", *self._flags, "system", "service", "--time=0", self.url],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=self._env,
                start_new_session=True,
            )  # fmt: skip
        client = docker.APIClient(base_url=self.url, version="1.41", timeout=10)
        try:
            wait_until(self._answers(client), 30, message=f"podman service on {self.url}")
        finally:
            client.close()
        self._import_image()
        # A network of its own: Podman picks a bridge name and subnet no one uses yet.
        self.network = f"testbed-{uuid.uuid4().hex[:8]}"
        self.cli("network", "create", "--disable-dns", "--label", f"{LABEL}=1", self.network)

    def gateway(self) -> str:
        """The host's address on the test network (how containers reach ZooKeeper)."""
        [network] = json.loads(self.cli("network", "inspect", self.network))
        return str(network["subnets"][0]["gateway"])

    def run_python(
        self,
        script: Path,
        args: Sequence[str],
        *,
        options: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        volumes: Sequence[str] = (),
    ) -> str:
        """``podman run -d`` of the host's Python on ``script`` (the Docker tests' way: an
        empty image, the host's system and venv mounted read-only); ``options`` are
        ``podman run``'s (``-p``, ``-P``, ``--network``, ``--label``); ``volumes`` more
        read-only mounts at the same path. Returns the container's ID once it runs."""
        mounts = [*python_mounts(script), *volumes]
        environment = {"PYTHONPATH": str(TESTBED_DIR.parent), "PYTHONDONTWRITEBYTECODE": "1",
                       **(env or {})}  # fmt: skip
        argv = [
            "run", "-d", "--name", f"testbed-{uuid.uuid4().hex[:8]}",
            "--label", f"{LABEL}=1",
            *(f"--volume={path}:{path}:ro" for path in mounts),
            *(f"--env={key}={value}" for key, value in environment.items()),
            *(() if any(o.startswith(("--network", "--pod")) for o in options) else
              (f"--network={self.network}",)),
            *options, IMAGE, sys.executable, "-u", str(script.resolve()), *args,
        ]  # fmt: skip
        return self.cli(*argv)

    def inspect(self, container: str) -> dict[str, Any]:
        """``podman inspect`` of one container (Podman's own format)."""
        found: list[dict[str, Any]] = json.loads(self.cli("inspect", "--type", "container",
                                                          container))  # fmt: skip
        return found[0]

    def logs(self, container: str) -> list[str]:
        """The container's output so far (standard output and error), by line."""
        done = subprocess.run(["podman", *self._flags, "logs", container], env=self._env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=60, check=False)  # fmt: skip
        return done.stdout.splitlines()

    def wait_for_line(self, container: str, prefix: str, timeout: float = 30) -> str:
        """The first output line starting with ``prefix`` (without it); fails early if the
        container stops first."""

        def found() -> str | None:
            lines = [line for line in self.logs(container) if line.startswith(prefix)]
            if lines:
                return lines[0].removeprefix(prefix).strip() or prefix
            if self.inspect(container)["State"]["Status"] in ("exited", "stopped"):
                raise PodmanError(f"{container[:12]} stopped: {self.logs(container)[-20:]}")
            return None

        return wait_until(found, timeout, interval=0.1, message=f"no {prefix!r} from {container}")

    def stop(self) -> None:
        """Remove every container and the network, stop the service, unmount the storage."""
        with contextlib.suppress(PodmanError, subprocess.TimeoutExpired):
            self.cli("rm", "--all", "--force", "--time", "0", timeout=120)
        if self.network:
            with contextlib.suppress(PodmanError, subprocess.TimeoutExpired):
                self.cli("network", "rm", "--force", self.network)
        if self._service is not None:
            self._service.send_signal(signal.SIGTERM)
            try:
                self._service.wait(30)
            except subprocess.TimeoutExpired:
                self._service.kill()
                self._service.wait()
        _unmount_under(self.work)

    @staticmethod
    def _answers(client: docker.APIClient) -> Any:
        def ping() -> bool:
            try:
                return bool(client.ping())
            except (docker.errors.DockerException, OSError):
                return False

        return ping

    def _import_image(self) -> None:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for name, mode in _ROOTFS_DIRS.items():
                info = tarfile.TarInfo(name)
                info.type, info.mode = tarfile.DIRTYPE, mode
                tar.addfile(info)
        tarball = self.work / "rootfs.tar"
        tarball.write_bytes(buffer.getvalue())
        self.cli("import", "--change", f"EXPOSE {DUBBO_PORT}", "--change",
                 f"LABEL {LABEL}=1", str(tarball), IMAGE)  # fmt: skip


def podman_missing() -> str | None:
    """Why Podman cannot run here (None: it can)."""
    if shutil.which("podman") is None:
        return "podman is not installed (Debian: apt-get install podman netavark aardvark-dns)"
    return None


def _unmount_under(directory: Path) -> None:
    """Undo the mounts Podman's storage leaves (its overlay and shm mounts)."""
    root = str(directory.resolve())
    with open("/proc/mounts") as mounts:
        targets = [line.split()[1] for line in mounts if line.split()[1].startswith(root)]
    for target in sorted(targets, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)


@contextlib.contextmanager
def private_podman(work: Path) -> Iterator[Podman]:
    """A started private Podman, stopped and emptied when the block ends."""
    podman = Podman(work)
    try:
        podman.start()
        yield podman
    finally:
        podman.stop()
