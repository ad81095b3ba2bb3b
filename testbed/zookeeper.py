"""Real ZooKeeper servers (standalone or an ensemble's members) run as child processes for tests."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import weakref
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from testbed.polling import free_port, wait_until
from testbed.tls import ServerTls
from testbed.zookeeper_config import (
    ADMIN_CLASSPATH,
    NETTY_CLASSPATH,
    SASL_LINES,
    jaas_text,
    tls_lines,
)

JAVA = "/usr/bin/java"
CLASSPATH: tuple[str, ...] = (
    "/usr/share/java/zookeeper.jar",
    "/usr/share/java/slf4j-simple.jar",
)
MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
JVM_OPTIONS: tuple[str, ...] = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")
FOUR_LETTER_WORDS = "ruok,srvr,cons,stat,wchs,wchc,mntr,dump,conf"
_WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::"})
# Every server started in this process, so that an interpreter exiting without running the
# fixtures' finalisers (Ctrl-C, a crash) does not leave JVMs behind.
_live_servers: weakref.WeakSet[ZooKeeperServer] = weakref.WeakSet()


def check_prerequisites(java: str = JAVA, classpath: Sequence[str] = CLASSPATH) -> None:
    """Fail with an actionable message when Java or the ZooKeeper jars are missing."""
    if shutil.which(java) is None:
        raise RuntimeError(
            f"{java} not found: install a Java runtime "
            "(Debian: apt-get install default-jre-headless)"
        )
    for jar in classpath:
        if not Path(jar).is_file():
            package = "zookeeper" if "zookeeper" in jar else "libslf4j-java"
            raise RuntimeError(f"{jar} not found: install it (Debian: apt-get install {package})")


class ZooKeeperServer:
    """One ZooKeeper server process with its own config, data directory and log file.

    ``bind`` is the client port's listen address: ``127.0.0.1`` for host-only tests,
    ``0.0.0.0`` when containers must reach the server through a bridge gateway. Clients on the
    host always use :attr:`connect_string` (loopback unless ``bind`` names another address).

    ``tickTime`` is 500 ms so that ZooKeeper accepts sessions down to 1 s (its floor is
    ``minSessionTimeout``, which defaults to two ticks) and tests can let sessions expire
    quickly; ``maxSessionTimeout`` is 120 s so that Dubbo's default of 60 s is honoured.
    """

    def __init__(
        self,
        work_dir: Path,
        bind: str = "127.0.0.1",
        *,
        client_port: int | None = None,
        admin_port: int | None = None,
        tick_time_ms: int = 500,
        min_session_timeout_ms: int = 1000,
        max_session_timeout_ms: int = 120_000,
        start_timeout: float = 30.0,
        server_id: int | None = None,
        quorum: Sequence[str] = (),
        java: str = JAVA,
        classpath: Sequence[str] = CLASSPATH,
        four_letter_words: str = FOUR_LETTER_WORDS,
        heap: str = "256m",
        max_client_connections: int | None = None,
        jute_maxbuffer: int | None = None,
        tls: ServerTls | None = None,
        sasl_users: dict[str, str] | None = None,
    ) -> None:
        """Prepare (but do not start) a server.

        ``client_port`` ``None`` picks a free port at the first :meth:`start`; ``admin_port``
        ``None`` disables the AdminServer and ``0`` enables it on a free port.
        ``server_id`` and ``quorum`` (``server.N=host:peer:election`` lines) are set by
        :class:`ZooKeeperEnsemble`. ``four_letter_words`` is the whitelist (``ruok,srvr`` are
        needed to tell when the server is ready). ``max_client_connections``: connections
        allowed from one client address (``maxClientCnxns``; ZooKeeper's default is 60, 0 is
        unlimited). ``jute_maxbuffer``: the largest request the server takes, bytes (its
        ``jute.maxbuffer``; ``None``: ZooKeeper's default, 1 MB less one byte). ``tls``: the
        client port is a ``secureClientPort`` only (Netty, ``ssl.clientAuth=need``): every
        client, the testbed's four-letter words included, speaks TLS with a client certificate.
        ``sasl_users``: user -> password of a JAAS ``DigestLoginModule``; every session must
        then authenticate with SASL (``enforce.auth.schemes=sasl``).
        """
        self.work_dir = work_dir
        self.bind = bind
        self.tick_time_ms = tick_time_ms
        self.min_session_timeout_ms = min_session_timeout_ms
        self.max_session_timeout_ms = max_session_timeout_ms
        self.start_timeout = start_timeout
        self.server_id = server_id
        self.quorum = tuple(quorum)
        self.java = java
        admin, netty = (
            ADMIN_CLASSPATH if admin_port is not None else (),
            NETTY_CLASSPATH if tls else (),
        )
        self.classpath = (*classpath, *admin, *netty)
        self.tls, self.sasl_users = tls, sasl_users
        self.four_letter_words, self.heap = four_letter_words, heap
        self.max_client_connections = max_client_connections
        self.jute_maxbuffer = jute_maxbuffer
        self._port = client_port
        self._admin_port = admin_port
        self._process: subprocess.Popen[bytes] | None = None
        self._paused = False

    # -- properties -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The client port (fixed at the first start, kept across restarts)."""
        if self._port is None:
            raise RuntimeError("ZooKeeper server has not been started yet")
        return self._port

    @property
    def admin_port(self) -> int | None:
        """The AdminServer's HTTP port, or ``None`` when the AdminServer is disabled."""
        return self._admin_port

    @property
    def host(self) -> str:
        """The address host-side clients connect to."""
        return "127.0.0.1" if self.bind in _WILDCARD_BINDS else self.bind

    @property
    def connect_string(self) -> str:
        """``host:port`` for kazoo and for the sidecar."""
        return f"{self.host}:{self.port}"

    @property
    def data_dir(self) -> Path:
        """ZooKeeper's ``dataDir`` (snapshots, transaction logs, ``myid``)."""
        return self.work_dir / "data"

    @property
    def config_path(self) -> Path:
        """The generated ``zoo.cfg``."""
        return self.work_dir / "zoo.cfg"

    @property
    def log_path(self) -> Path:
        """The server's combined stdout/stderr, appended to across restarts."""
        return self.work_dir / "zookeeper.log"

    @property
    def pid_path(self) -> Path:
        """A pid file written while the server runs, for cleanup after a crashed test run."""
        return self.work_dir / "zookeeper.pid"

    @property
    def pid(self) -> int | None:
        """The JVM's process id while it runs."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def running(self) -> bool:
        """Whether the JVM process is alive (it may be paused)."""
        return self._process is not None and self._process.poll() is None

    @property
    def paused(self) -> bool:
        """Whether the process is stopped with SIGSTOP."""
        return self._paused and self.running

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, *, wait: bool = True) -> ZooKeeperServer:
        """Write the config and start the JVM; with ``wait``, return once it serves clients."""
        if self.running:
            raise RuntimeError(f"ZooKeeper server on port {self._port} is already running")
        check_prerequisites(self.java, self.classpath)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)
        if self._port is None:
            self._port = free_port()
        if self._admin_port == 0:
            self._admin_port = free_port()
        self._write_config()
        argv = [
            self.java,
            f"-Xmx{self.heap}",
            *JVM_OPTIONS,
            *([f"-Djute.maxbuffer={self.jute_maxbuffer}"] if self.jute_maxbuffer else []),
            *([f"-Djava.security.auth.login.config={self._jaas()}"] if self.sasl_users else []),
            "-cp",
            ":".join(self.classpath),
            MAIN_CLASS,
            str(self.config_path),
        ]
        with self.log_path.open("ab") as log:
            log.write(f"--- starting {' '.join(argv)}\n".encode())
            log.flush()
            # A session of its own so that signals aimed at the test runner's process group
            # (Ctrl-C) do not reach the server before the fixtures stop it in order.
            self._process = subprocess.Popen(
                argv,
                cwd=self.work_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._paused = False
        self.pid_path.write_text(f"{self._process.pid}\n")
        _live_servers.add(self)
        if wait:
            try:
                self.wait_ready()
            except BaseException:
                self.kill()
                raise
        return self

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until the server answers ``ruok`` and ``srvr`` reports a serving mode."""
        wait_until(
            self.is_serving,
            self.start_timeout if timeout is None else timeout,
            message=f"ZooKeeper on port {self._port} not serving (log: {self.log_path})",
            retry_on=(OSError,),
        )

    def is_serving(self) -> bool:
        """One readiness probe; raises ``RuntimeError`` if the process has exited.

        ``ruok`` alone is not enough: an ensemble member answers ``imok`` before it has
        joined a quorum, while ``srvr`` only reports a ``Mode:`` once it serves requests.
        """
        if not self.running:
            raise RuntimeError(
                f"ZooKeeper on port {self._port} exited with code "
                f"{self._process.returncode if self._process else None}; "
                f"log tail:\n{self.log_tail()}"
            )
        return self.four_letter("ruok") == "imok" and "Mode: " in self.four_letter("srvr")

    def mode(self) -> str | None:
        """``standalone``, ``leader`` or ``follower``; ``None`` when not serving or unreachable."""
        try:
            answer = self.four_letter("srvr", timeout=1.0)
        except OSError:
            return None
        for line in answer.splitlines():
            if line.startswith("Mode: "):
                return line.removeprefix("Mode: ").strip()
        return None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the server, SIGKILL it if it has not exited within ``timeout``, and reap it."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            # A stopped process would keep SIGTERM pending forever.
            self._signal(signal.SIGCONT)
            self._signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                process.wait()
        self._forget()

    def kill(self) -> None:
        """SIGKILL the server (a crash: no clean shutdown, sessions survive in the data dir)."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            self._signal(signal.SIGKILL)
            process.wait()
        self._forget()

    def pause(self) -> None:
        """Freeze the server with SIGSTOP: connections stay open but nothing is answered."""
        if not self.running:
            raise RuntimeError("cannot pause a ZooKeeper server that is not running")
        self._signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """Undo :meth:`pause` with SIGCONT."""
        if not self.running:
            raise RuntimeError("cannot resume a ZooKeeper server that is not running")
        self._signal(signal.SIGCONT)
        self._paused = False

    def restart(self, *, wait: bool = True) -> ZooKeeperServer:
        """Stop the server if it runs, then start it again on the same port and data dir."""
        self.stop()
        return self.start(wait=wait)

    def four_letter(self, word: str, timeout: float = 2.0) -> str:
        """Send a four-letter-word command and return the answer (raises ``OSError``)."""
        with socket.create_connection((self.host, self.port), timeout=timeout) as plain:
            sock = self.tls.secure(plain) if self.tls else plain
            sock.sendall(word.encode("ascii"))
            chunks: list[bytes] = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode("utf-8", errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the server log (for error messages)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> ZooKeeperServer:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"ZooKeeperServer(port={self._port}, bind={self.bind!r}, pid={self.pid})"

    def _write_config(self) -> None:
        lines = [
            f"tickTime={self.tick_time_ms}",
            "initLimit=20",
            "syncLimit=5",
            f"minSessionTimeout={self.min_session_timeout_ms}",
            f"maxSessionTimeout={self.max_session_timeout_ms}",
            f"dataDir={self.data_dir}",
            f"4lw.commands.whitelist={self.four_letter_words}",
        ]
        port = "secureClientPort" if self.tls else "clientPort"
        lines += [f"{port}={self.port}", f"{port}Address={self.bind or '0.0.0.0'}"]
        if self.tls:
            lines += tls_lines(self.tls, admin=self._admin_port is not None)
        if self.sasl_users:
            lines += SASL_LINES
        if self.max_client_connections is not None:
            lines.append(f"maxClientCnxns={self.max_client_connections}")
        if self._admin_port is None:
            lines.append("admin.enableServer=false")
        else:
            lines += [
                "admin.enableServer=true",
                "admin.serverAddress=127.0.0.1",
                f"admin.serverPort={self._admin_port}",
            ]
        if self.quorum:
            lines += list(self.quorum)
            (self.data_dir / "myid").write_text(f"{self.server_id}\n")
        self.config_path.write_text("\n".join(lines) + "\n")

    def _jaas(self) -> Path:
        """The JAAS file of the server's SASL digest users."""
        path = self.work_dir / "jaas.conf"
        path.write_text(jaas_text(self.sasl_users or {}))
        return path

    def _signal(self, sig: signal.Signals) -> None:
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, sig)

    def _forget(self) -> None:
        self._paused = False
        self.pid_path.unlink(missing_ok=True)
        _live_servers.discard(self)


@atexit.register
def _kill_leftover_servers() -> None:
    for server in list(_live_servers):
        server.kill()
