"""Containers running the host's Python in an empty ``FROM scratch`` image (no pulls needed)."""

from __future__ import annotations

import io
import sys
import tarfile
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container

from testbed.engine import LABEL, LABELS
from testbed.polling import wait_until

RUNTIME_IMAGE = "dubbo-nat-sidecar-testbed/runtime:2"
DUBBO_PORT = 20880
TESTBED_DIR = Path(__file__).resolve().parent
"""The ``testbed`` package directory; its parent goes on ``PYTHONPATH`` inside containers."""
HOST_SYSTEM_DIRS: tuple[str, ...] = ("/usr", "/lib", "/lib64", "/bin", "/etc")

_DOCKERFILE = f"""\
FROM scratch
COPY rootfs/ /
LABEL {LABEL}=1
EXPOSE {DUBBO_PORT}
"""
# Mount points Docker fills itself (/proc, /sys, /dev) still need to exist in a scratch
# image for some tools; /tmp must be world-writable with the sticky bit like on any host.
_ROOTFS_DIRS: dict[str, int] = {
    "tmp": 0o1777,
    "proc": 0o555,
    "sys": 0o555,
    "dev": 0o755,
    "run": 0o755,
    "root": 0o700,
}


def ensure_runtime_image(client: docker.DockerClient) -> str:
    """Build :data:`RUNTIME_IMAGE` unless it exists, and return its tag.

    The image holds nothing but empty directories; :func:`run_python` bind-mounts the host's
    system directories and Python installation into it.
    """
    try:
        client.images.get(RUNTIME_IMAGE)
    except docker.errors.ImageNotFound:
        client.images.build(
            fileobj=_build_context(),
            custom_context=True,
            tag=RUNTIME_IMAGE,
            labels=dict(LABELS),
            rm=True,
            forcerm=True,
        )
    return RUNTIME_IMAGE


def python_mounts(script: Path) -> list[str]:
    """The host directories (mounted read-only at the same path) a containerised script needs.

    Directories nested in another listed directory are dropped: Docker would otherwise mount
    the same files twice.
    """
    candidates = [
        *HOST_SYSTEM_DIRS,
        sys.base_prefix,
        sys.prefix,
        str(script.resolve().parent),
        str(TESTBED_DIR),
    ]
    existing = [Path(path) for path in dict.fromkeys(candidates) if Path(path).exists()]
    return [
        str(path)
        for path in existing
        if not any(other != path and path.is_relative_to(other) for other in existing)
    ]


def run_python(
    client: docker.DockerClient,
    script: Path,
    args: Sequence[str],
    *,
    name_prefix: str,
    publish_all: bool = True,
    ports: Mapping[str, Any] | None = None,
    network: str | None = None,
    network_mode: str | None = None,
    env: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    healthcheck: Mapping[str, Any] | None = None,
    volumes: Mapping[str, str] | None = None,
    start_timeout: float = 30.0,
) -> Container:
    """Run ``python -u script args`` in a new container and return it once it is running.

    The interpreter is the host's (``sys.executable``, the test venv), so the script can use
    every package installed there; ``testbed`` is importable through ``PYTHONPATH``. The
    container gets a name ``<name_prefix>-<random>`` and :data:`LABEL`, has its own network
    namespace (unless ``network_mode`` says otherwise) and, with ``publish_all``, publishes
    every exposed port (20880 is exposed by the image) on random host ports.
    """
    image = ensure_runtime_image(client)
    mounts = {path: {"bind": path, "mode": "ro"} for path in python_mounts(script)}
    # Extra read-only mounts, host path -> container path (e.g. a file the test edits).
    mounts |= {host: {"bind": inside, "mode": "ro"} for host, inside in (volumes or {}).items()}
    environment = {
        "PYTHONPATH": str(TESTBED_DIR.parent),
        "PYTHONDONTWRITEBYTECODE": "1",
        **(env or {}),
    }
    given = {"ports": ports, "network": network, "network_mode": network_mode,
             "healthcheck": healthcheck}  # fmt: skip
    options: dict[str, Any] = {key: value for key, value in given.items() if value is not None}
    container: Container = client.containers.run(
        image,
        [sys.executable, "-u", str(script.resolve()), *args],
        detach=True,
        name=f"{name_prefix}-{uuid.uuid4().hex[:8]}",
        labels={**LABELS, **(labels or {})},
        volumes=mounts,
        environment=environment,
        publish_all_ports=publish_all,
        **options,
    )
    _wait_running(container, start_timeout)
    return container


def _wait_running(container: Container, timeout: float) -> None:
    """Wait until ``container`` runs; raise with its output if it exits first."""

    def running() -> bool:
        container.reload()
        if container.status in ("exited", "dead"):
            raise RuntimeError(
                f"container {container.name} exited early: {container_output(container)}"
            )
        return container.status == "running"

    wait_until(running, timeout, message=f"container {container.name} not running")


def container_output(container: Container) -> str:
    """The container's stdout and stderr so far, decoded (for assertion messages)."""
    try:
        raw: bytes = container.logs(stdout=True, stderr=True)
    except docker.errors.NotFound:
        return "<container removed>"
    return raw.decode("utf-8", errors="replace")


def output_lines(container: Container, prefix: str = "") -> list[str]:
    """The container's stdout lines that start with ``prefix``."""
    raw: bytes = container.logs(stdout=True, stderr=False)
    lines = raw.decode("utf-8", errors="replace").splitlines()
    return [line for line in lines if line.startswith(prefix)]


def wait_for_line(container: Container, prefix: str, timeout: float = 30.0, count: int = 1) -> str:
    """Wait until the container has printed ``count`` stdout lines starting with ``prefix``.

    Returns the ``count``-th such line without the prefix (stripped). Fails at once with the
    container's output if the container stops first.
    """

    def found() -> str | None:
        lines = output_lines(container, prefix)
        if len(lines) >= count:
            return lines[count - 1].removeprefix(prefix).strip() or prefix
        container.reload()
        if container.status in ("exited", "dead"):
            raise RuntimeError(
                f"container {container.name} exited before printing {prefix!r}: "
                f"{container_output(container)}"
            )
        return None

    line = wait_until(
        found,
        timeout,
        message=f"container {container.name} did not print {prefix!r} x{count}",
    )
    assert line is not None  # wait_until only returns truthy results
    return line


def time_to_line(
    client: docker.DockerClient,
    script: Path,
    args: Sequence[str],
    prefix: str,
    *,
    name_prefix: str = "timing",
    **run_options: Any,
) -> float:
    """Seconds from ``run_python`` to the script printing ``prefix`` (the container is removed)."""
    started = time.monotonic()
    container = run_python(client, script, args, name_prefix=name_prefix, **run_options)
    try:
        wait_for_line(container, prefix)
        return time.monotonic() - started
    finally:
        container.remove(force=True)


def _build_context() -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        dockerfile = _DOCKERFILE.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(dockerfile))
        for name in ("rootfs", *(f"rootfs/{d}" for d in _ROOTFS_DIRS)):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = _ROOTFS_DIRS.get(name.removeprefix("rootfs/"), 0o755)
            tar.addfile(info)
    buffer.seek(0)
    return buffer
