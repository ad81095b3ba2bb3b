"""A real Docker Engine for tests: reuse the running daemon or start one; clean up by label."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

import docker
import docker.errors

from testbed.networks import network_gateway, network_subnet
from testbed.polling import wait_until

LABEL = "dubbo-nat-sidecar-testbed"
"""Label key put on every container, network and image the harness creates (value ``"1"``)."""
LABELS: dict[str, str] = {LABEL: "1"}
RUN_LABEL = f"{LABEL}.run"
"""Optional label key whose value identifies one test run, so that a run removes only its own
objects (``remove_labelled(client, f"{RUN_LABEL}={run_id}")``) while another run goes on."""
DEFAULT_SOCKET = Path("/var/run/docker.sock")
DEFAULT_PID_FILE = Path("/var/run/docker.pid")
# A unix socket path must fit in 108 bytes; containerd's lives under the exec root.
_MAX_EXEC_ROOT_LENGTH = 60


class DockerEngine:
    """A Docker Engine reachable over a unix socket, possibly a ``dockerd`` started by us.

    Only a daemon started here (``started_here``) is ever stopped or restarted: a daemon that
    was already running belongs to someone else.
    """

    def __init__(
        self,
        url: str,
        client: docker.DockerClient,
        *,
        argv: Sequence[str] = (),
        process: subprocess.Popen[bytes] | None = None,
        log_path: Path | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        """Wrap ``client``; ``argv``/``process`` describe a ``dockerd`` started by the harness."""
        self.url = url
        self.client = client
        self.argv = tuple(argv)
        self.log_path = log_path
        self.start_timeout = start_timeout
        self._process = process

    @property
    def started_here(self) -> bool:
        """Whether this harness started the daemon (and may therefore stop or restart it)."""
        return bool(self.argv)

    @property
    def pid(self) -> int | None:
        """The pid of the ``dockerd`` started here while it runs."""
        if self._process is not None and self._process.poll() is None:
            return self._process.pid
        return None

    def stop(self, timeout: float = 30.0) -> None:
        """Close the client; also SIGTERM (then SIGKILL) ``dockerd`` if it was started here."""
        with contextlib.suppress(Exception):
            self.client.close()
        if self._process is not None:
            _terminate(self._process, timeout)
            self._process = None
            _unmount_data_root(self.argv)

    def restart(self, timeout: float = 30.0) -> None:
        """Restart a daemon started here, as a crash-free ``systemctl restart docker`` would.

        Containers without a restart policy are stopped with the daemon and stay stopped
        (unless it runs with ``--live-restore``); ``client`` is replaced by one connected to
        the new daemon.
        """
        self.halt(timeout)
        self.start_again()

    def halt(self, timeout: float = 30.0) -> None:
        """Stop a daemon started here, leaving its data (and, with live-restore, containers)."""
        if not self.started_here:
            raise RuntimeError(
                f"the Docker Engine at {self.url} was not started by the test harness; "
                "refusing to stop it"
            )
        with contextlib.suppress(Exception):
            self.client.close()
        if self._process is not None:
            _terminate(self._process, timeout)
            self._process = None

    def start_again(self) -> None:
        """Start a halted daemon with the same arguments; ``client`` is replaced."""
        assert self.log_path is not None
        self._process = _spawn_dockerd(self.argv, self.log_path)
        self.client = _wait_for_daemon(self.url, self._process, self.start_timeout, self.log_path)

    def bridge_gateway(self) -> str:
        """The IPv4 gateway of the default ``bridge`` network (the host as seen by containers)."""
        return network_gateway(self.client, "bridge")

    def bridge_subnet(self) -> str:
        """The IPv4 subnet of the default ``bridge`` network, e.g. ``172.17.0.0/16``."""
        return network_subnet(self.client, "bridge")

    def __enter__(self) -> DockerEngine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"DockerEngine(url={self.url!r}, started_here={self.started_here}, pid={self.pid})"


def ensure_docker_engine(
    work_dir: Path,
    *,
    socket_path: Path = DEFAULT_SOCKET,
    extra_args: Sequence[str] = (),
    start_timeout: float = 60.0,
) -> DockerEngine:
    """Return the daemon answering on ``socket_path``, starting ``dockerd`` if none answers.

    A daemon started here keeps its data in ``work_dir/docker-data`` and logs to
    ``work_dir/dockerd.log``. For a socket other than the default one the daemon also gets its
    own pid file and exec root, so that it can run next to the system daemon, e.g. to test
    :meth:`DockerEngine.restart` where the system daemon must not be restarted. It must then
    stay off ``docker0`` and the system daemon's iptables chains: create a bridge of its own
    (``ip link add tb0 type bridge; ip addr add 10.213.0.1/24 dev tb0; ip link set tb0 up``)
    and pass ``extra_args=["--bridge=tb0", "--iptables=false", "--ip6tables=false",
    "--ip-masq=false"]``. ``--bridge=none`` is refused: dockerd then *deletes* ``docker0``,
    cutting the system daemon's containers off the network.
    """
    if _disables_default_bridge(extra_args):
        raise ValueError(
            "dockerd --bridge=none deletes the host's docker0 interface; give the extra "
            "daemon a bridge of its own instead (see ensure_docker_engine's docstring)"
        )
    url = f"unix://{socket_path}"
    client = _try_connect(url)
    if client is not None:
        return DockerEngine(url, client)
    if shutil.which("dockerd") is None:
        raise RuntimeError(
            "no Docker Engine answers on "
            f"{socket_path} and dockerd is not installed (Debian: apt-get install docker.io)"
        )
    work_dir.mkdir(parents=True, exist_ok=True)
    argv = _dockerd_argv(work_dir, socket_path, extra_args)
    log_path = work_dir / "dockerd.log"
    process = _spawn_dockerd(argv, log_path)
    try:
        client = _wait_for_daemon(url, process, start_timeout, log_path)
    except BaseException:
        _terminate(process, 30.0)
        raise
    return DockerEngine(
        url,
        client,
        argv=argv,
        process=process,
        log_path=log_path,
        start_timeout=start_timeout,
    )


def _dockerd_argv(work_dir: Path, socket_path: Path, extra_args: Sequence[str]) -> list[str]:
    """dockerd's command line: on the default socket as the system daemon would run (a stale
    pid file removed), on another socket with its own pid file and exec root."""
    argv = ["dockerd", "--data-root", str(work_dir / "docker-data")]
    if socket_path == DEFAULT_SOCKET:
        _remove_stale_pid_file(DEFAULT_PID_FILE)
    else:
        argv += [
            "--host",
            f"unix://{socket_path}",
            "--pidfile",
            str(work_dir / "dockerd.pid"),
            "--exec-root",
            str(_short_exec_root(work_dir)),
        ]
    return argv + list(extra_args)


def remove_labelled(client: docker.DockerClient, label: str = LABEL) -> list[str]:
    """Force-remove every container, then every network, matching ``label``; return their names.

    ``label`` is a Docker label filter: a key (``LABEL``) or ``key=value``. Images are kept,
    they are a cache.
    """
    removed: list[str] = []
    for container in client.containers.list(all=True, filters={"label": label}):
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True, v=True)
            removed.append(f"container {container.name}")
    for network in client.networks.list(filters={"label": label}):
        with contextlib.suppress(docker.errors.NotFound):
            network.remove()
            removed.append(f"network {network.name}")
    return removed


def _disables_default_bridge(args: Sequence[str]) -> bool:
    for index, arg in enumerate(args):
        if arg in ("--bridge=none", "-b=none"):
            return True
        if arg in ("--bridge", "-b") and index + 1 < len(args) and args[index + 1] == "none":
            return True
    return False


def _try_connect(url: str) -> docker.DockerClient | None:
    try:
        client = docker.DockerClient(base_url=url, timeout=60)
        client.ping()
    except (docker.errors.DockerException, OSError):
        return None
    return client


def _remove_stale_pid_file(pid_file: Path) -> None:
    # dockerd refuses to start while its pid file names a live process; one killed earlier
    # leaves the file behind.
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        pid_file.unlink(missing_ok=True)
        return
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        return
    raise RuntimeError(
        f"{pid_file} names running process {pid}, but no Docker Engine answers on "
        f"{DEFAULT_SOCKET}; refusing to start a second dockerd"
    )


def _short_exec_root(work_dir: Path) -> Path:
    candidate = work_dir / "exec"
    if len(str(candidate)) <= _MAX_EXEC_ROOT_LENGTH:
        candidate.mkdir(parents=True, exist_ok=True)
        return candidate
    return Path(tempfile.mkdtemp(prefix="dockerd-exec-"))


def _spawn_dockerd(argv: Sequence[str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        log.write(f"--- starting {' '.join(argv)}\n".encode())
        log.flush()
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_for_daemon(
    url: str, process: subprocess.Popen[bytes], timeout: float, log_path: Path
) -> docker.DockerClient:
    def connected() -> docker.DockerClient | None:
        if process.poll() is not None:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
            raise RuntimeError(f"dockerd exited with code {process.returncode}:\n{tail}")
        return _try_connect(url)

    client = wait_until(
        connected,
        timeout,
        interval=0.1,
        message=f"dockerd did not answer on {url} (log: {log_path})",
    )
    assert client is not None  # wait_until only returns truthy results
    return client


def _unmount_data_root(argv: Sequence[str]) -> None:
    """Undo the bind mounts dockerd leaves on its data root, so the directory can be deleted."""
    data_root = os.path.realpath(argv[argv.index("--data-root") + 1])
    with open("/proc/mounts") as mounts:
        targets = [line.split()[1] for line in mounts if line.split()[1].startswith(data_root)]
    for target in sorted(targets, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)


def _terminate(process: subprocess.Popen[bytes], timeout: float) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def private_engine(work_dir: Path, subnet_index: int = 213) -> Iterator[DockerEngine]:
    """A second, restartable ``dockerd`` of the test's own, beside the system daemon.

    It gets its own socket, bridge (``10.<subnet_index>.0.1/24``) and data, keeps its
    containers running across its own restarts (``--live-restore``), and leaves the system
    daemon's iptables chains alone. Everything is removed on exit, containers first.
    """
    bridge = f"tb{os.getpid() % 10000}"
    gateway = f"10.{subnet_index}.0.1/24"
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", gateway, "dev", bridge], check=True)
        subprocess.run(["ip", "link", "set", bridge, "up"], check=True)
        engine = ensure_docker_engine(
            work_dir,
            socket_path=work_dir / "docker.sock",
            extra_args=[f"--bridge={bridge}", "--iptables=false", "--ip6tables=false",
                        "--ip-masq=false", "--live-restore"],
        )  # fmt: skip
        try:
            yield engine
        finally:
            with contextlib.suppress(docker.errors.DockerException):
                remove_labelled(engine.client)
            engine.stop()
    finally:
        subprocess.run(["ip", "link", "del", bridge], check=False)
