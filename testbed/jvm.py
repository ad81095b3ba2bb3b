"""Real Java clients for the tests: Debian's jars, sources compiled once, and a child process
(on the host, or in a ``FROM scratch`` container via ``docker run -i``) driven by stdin lines."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import docker
import docker.errors
from docker.models.containers import Container

from testbed.polling import wait_until

JAVA = "/usr/bin/java"
JAVAC = "/usr/bin/javac"
JARS = Path("/usr/share/java")
JVM_OPTIONS: tuple[str, ...] = ("-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")
# The Debian package that ships each jar, for the message when one is missing.
_PACKAGE_OF = {
    "curator": "libcurator-framework-java libcurator-recipes-java libcurator-discovery-java",
    "zookeeper": "libzookeeper-java",
    "guava": "libguava-java",
    "jackson": "libjackson2-databind-java",
    "slf4j": "libslf4j-java",
    "commons-cli": "libcommons-cli-java",
}


def jars(*names: str) -> tuple[str, ...]:
    """The paths of Debian's unversioned jars (``curator-framework`` -> its .jar); fails with
    the package to install when one is missing."""
    paths = tuple(str(JARS / f"{name}.jar") for name in names)
    for name, path in zip(names, paths, strict=True):
        if not Path(path).is_file():
            package = next((p for k, p in _PACKAGE_OF.items() if name.startswith(k)), name)
            raise RuntimeError(f"{path} not found: install it (Debian: apt-get install {package})")
    return paths


def compile_sources(sources: Path, out: Path, classpath: Sequence[str]) -> Path:
    """Compile every ``.java`` file under ``sources`` into ``out`` and return ``out``; nothing
    is done when ``out`` already holds the classes of exactly these sources."""
    files = sorted(sources.rglob("*.java"))
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(sources)).encode() + b"\0" + file.read_bytes())
    stamp = out / ".sources.sha256"
    if stamp.is_file() and stamp.read_text() == digest.hexdigest():
        return out
    if shutil.which(JAVAC) is None:
        raise RuntimeError(f"{JAVAC} not found (Debian: apt-get install default-jdk-headless)")
    out.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [JAVAC, "-d", str(out), "-cp", ":".join(classpath), *map(str, files)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"javac failed:\n{done.stdout}{done.stderr}")
    stamp.write_text(digest.hexdigest())
    return out


def java_argv(
    classpath: Sequence[str],
    main: str,
    args: Sequence[str],
    properties: Mapping[str, str] | None = None,
) -> list[str]:
    """The command line running ``main`` with the host's JVM (``properties``: ``-D`` flags)."""
    defines = [f"-D{key}={value}" for key, value in (properties or {}).items()]
    return [JAVA, *JVM_OPTIONS, *defines, "-cp", ":".join(classpath), main, *args]


def docker_run_argv(
    engine_url: str,
    image: str,
    name: str,
    command: Sequence[str],
    *,
    mounts: Sequence[str],
    labels: Mapping[str, str],
    publish_all: bool = True,
    network: str | None = None,
) -> list[str]:
    """``docker run -i`` of ``command`` in ``image`` (the testbed's empty runtime image) with
    ``mounts`` bound read-only at the same paths: the CLI relays stdin and stdout, which is
    what a line-driven program needs (docker-py's attach socket is not a plain pipe)."""
    argv = ["docker", "-H", engine_url, "run", "-i", "--name", name]
    argv += [f"--label={key}={value}" for key, value in labels.items()]
    argv += [f"--volume={path}:{path}:ro" for path in mounts]
    argv += ["--publish-all"] if publish_all else []
    argv += [f"--network={network}"] if network else []
    return [*argv, image, *command]


def start_in_container(
    client: docker.DockerClient, argv: Sequence[str], name: str, stderr: Path | None = None
) -> tuple[LineProcess, Container]:
    """Start ``argv`` (a :func:`docker_run_argv` naming its container ``name``) and return
    once the container exists; the process is killed if it never does."""
    process = LineProcess(argv, stderr=stderr)
    try:
        container = wait_until(
            lambda: client.containers.get(name), 30,
            message=f"container {name} not created", retry_on=(docker.errors.NotFound,),
        )  # fmt: skip
    except BaseException:
        process.kill()
        raise
    return process, container


class LineProcess:
    """A child process fed lines on stdin; a reader thread collects its stdout lines."""

    def __init__(self, argv: Sequence[str], stderr: Path | None = None) -> None:
        """``stderr``: a file for the child's stderr; None merges it into stdout."""
        self.argv = list(argv)
        self._stderr_path = stderr
        err = stderr.open("ab") if stderr is not None else None
        try:
            self._process = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err if err is not None else subprocess.STDOUT,
            )
        finally:
            if err is not None:
                err.close()
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="line-reader", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    @property
    def lines(self) -> list[str]:
        """Every stdout line so far, without line ends."""
        with self._changed:
            return list(self._lines)

    def send(self, line: str) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(line.encode() + b"\n")
        self._process.stdin.flush()

    def wait_for(
        self, matches: Callable[[str], bool], timeout: float, start: int = 0
    ) -> tuple[int, str]:
        """The index and text of the first line from index ``start`` on that ``matches``;
        fails early, with the output, when the process ends first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for index in range(start, len(self._lines)):
                    if matches(self._lines[index]):
                        return index, self._lines[index]
                start = max(start, len(self._lines))
                remaining = deadline - time.monotonic()
                if not self._reader.is_alive() or remaining <= 0:
                    state = "ended" if not self._reader.is_alive() else "is still running"
                    raise TimeoutError(
                        f"{self.argv[0]} {state} without the line awaited:\n{self.output()}"
                    )
                self._changed.wait(remaining)

    def close_stdin(self) -> None:
        assert self._process.stdin is not None
        with contextlib.suppress(OSError):
            self._process.stdin.close()

    def wait(self, timeout: float) -> int:
        return self._process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.running:
            self._process.kill()
        self._process.wait(timeout=10)
        self.close_stdin()

    def output(self, lines: int = 40) -> str:
        """The last stdout lines, and stderr's when it went to a file (for failure messages)."""
        text = "\n".join(self.lines[-lines:])
        if self._stderr_path is not None and self._stderr_path.exists():
            errors = self._stderr_path.read_text(errors="replace").splitlines()[-lines:]
            text += "\n-- stderr --\n" + "\n".join(errors)
        return text

    def _read(self) -> None:
        assert self._process.stdout is not None
        for raw in self._process.stdout:
            with self._changed:
                self._lines.append(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()
