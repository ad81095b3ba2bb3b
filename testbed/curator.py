"""A real Curator peer (``testbed/java/CuratorPeer.java``): Curator 5's ServiceDiscovery as
Dubbo 3 uses it for application-level instances, on the host or in a container.

The peer reads one JSON command per stdin line and answers one JSON object per stdout line:
replies in command order (``"reply": op, "ok": ...``) and events (``"event": "ready" |
"connection" | "listening"``) whenever they happen; connection events carry the session id
and password (hex), so a test can expire the session from outside.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import docker.errors
from docker.models.containers import Container

from testbed.engine import DockerEngine
from testbed.images import DUBBO_PORT, HOST_SYSTEM_DIRS, ensure_runtime_image
from testbed.jvm import (
    LineProcess,
    compile_sources,
    docker_run_argv,
    jars,
    java_argv,
    start_in_container,
)

SOURCES = Path(__file__).resolve().parent / "java"
MAIN = "CuratorPeer"
# Warnings and errors of Curator and ZooKeeper go to stderr; stdout stays JSON lines.
_LOGGING = {"org.slf4j.simpleLogger.defaultLogLevel": "warn"}


def curator_jars() -> tuple[str, ...]:
    """Debian's Curator 5 and ZooKeeper client jars and what they need at run time (the
    ZooKeeper client's own network layer is NIO: no netty)."""
    return jars(
        "curator-x-discovery", "curator-framework", "curator-recipes", "curator-client",
        "zookeeper", "zookeeper-jute", "guava", "jackson-databind", "jackson-core",
        "jackson-annotations", "slf4j-api", "slf4j-simple",
    )  # fmt: skip


def build(out: Path) -> Path:
    """Compile the peer and its payload class into ``out`` (unless done already); ``out``."""
    return compile_sources(SOURCES, out, curator_jars())


class PeerError(RuntimeError):
    """The peer answered a command with ``ok: false`` (``reply`` has ``error``, ``code``)."""

    def __init__(self, reply: dict[str, Any]) -> None:
        super().__init__(
            f"{reply.get('reply')} failed: {reply.get('error')}: {reply.get('message')}"
        )
        self.reply = reply


class CuratorPeer:
    """A running peer; use :meth:`on_host` or :meth:`in_container`."""

    def __init__(
        self, process: LineProcess, container: Container | None = None, timeout: float = 30.0
    ) -> None:
        """Wraps ``process`` once it has said it is ready (connected, discovery started)."""
        self.process = process
        self.container = container
        self._cursor = 0  # replies before this stdout line were consumed
        try:
            self.wait_for_event("ready", timeout=timeout)
        except BaseException:
            self.close()
            raise

    @classmethod
    def on_host(
        cls,
        classes: Path,
        connect: str,
        *,
        base_path: str = "/services",
        session_timeout_ms: int = 4000,
        listen_port: int | None = None,
        stderr: Path | None = None,
    ) -> CuratorPeer:
        """A peer process on this host connecting to ``connect``."""
        args = _peer_args(connect, base_path, session_timeout_ms, listen_port)
        argv = java_argv([str(classes), *curator_jars()], MAIN, args, _LOGGING)
        return cls(LineProcess(argv, stderr=stderr))

    @classmethod
    def in_container(
        cls,
        engine: DockerEngine,
        classes: Path,
        connect: str,
        *,
        labels: Mapping[str, str],
        base_path: str = "/services",
        session_timeout_ms: int = 4000,
        network: str | None = None,
        stderr: Path | None = None,
    ) -> CuratorPeer:
        """A peer in a new ``FROM scratch`` container running the host's JVM (its /usr, /lib,
        /etc mounted read-only), listening on 20880, published on a random host port;
        ``connect`` is ZooKeeper as seen from the container (e.g. the bridge gateway)."""
        image = ensure_runtime_image(engine.client)
        name = f"testbed-curator-{uuid.uuid4().hex[:8]}"
        args = _peer_args(connect, base_path, session_timeout_ms, DUBBO_PORT)
        command = java_argv([str(classes), *curator_jars()], MAIN, args, _LOGGING)
        mounts = [*(d for d in HOST_SYSTEM_DIRS if Path(d).exists()), str(classes)]
        # A container in another's network namespace publishes nothing of its own.
        shared = bool(network and network.startswith("container:"))
        argv = docker_run_argv(
            engine.url, image, name, command, mounts=mounts, labels=labels, network=network,
            publish_all=not shared,
        )  # fmt: skip
        return cls(*start_in_container(engine.client, argv, name, stderr=stderr))

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one command and return its reply; :class:`PeerError` if it failed."""
        self.process.send(json.dumps({"op": op, **fields}))
        index, line = self.process.wait_for(_is_reply, 30, start=self._cursor)
        self._cursor = index + 1
        reply: dict[str, Any] = json.loads(line)
        if not reply.get("ok"):
            raise PeerError(reply)
        return reply

    def register(self, name: str, address: str, port: int, metadata: Mapping[str, str]) -> str:
        """``registerService`` of an instance with id ``address:port``; its node path."""
        reply = self.call("register", name=name, address=address, port=port, metadata=metadata)
        return str(reply["path"])

    def update(self, instance_id: str, metadata: Mapping[str, str]) -> str:
        """``updateService`` with ``metadata`` put over the registered one; its node path."""
        return str(self.call("update", id=instance_id, metadata=metadata)["path"])

    def unregister(self, instance_id: str) -> None:
        self.call("unregister", id=instance_id)

    def query(self, name: str) -> list[dict[str, Any]]:
        """``queryForInstances(name)``: each instance's JSON as Curator read it."""
        instances: list[dict[str, Any]] = self.call("query", name=name)["instances"]
        return instances

    def cached(self, name: str) -> list[dict[str, Any]]:
        """The instances a ``ServiceCache`` of ``name`` holds (started on first use)."""
        instances: list[dict[str, Any]] = self.call("cache", name=name)["instances"]
        return instances

    def drop_connection(self) -> None:
        """Close the client's socket: it reconnects with the same session, and Curator
        re-registers every instance (delete and create: a new node)."""
        self.call("drop")

    @property
    def session(self) -> tuple[int, bytes]:
        """The current ZooKeeper session's id and password."""
        reply = self.call("session")
        return int(reply["session"], 16), bytes.fromhex(reply["password"])

    def events(self, name: str) -> list[dict[str, Any]]:
        """Every event line named ``name`` so far."""
        parsed = (_json(line) for line in self.process.lines)
        return [event for event in parsed if event.get("event") == name]

    def wait_for_event(self, name: str, timeout: float = 30.0, **fields: Any) -> dict[str, Any]:
        """The first event named ``name`` whose fields include ``fields``."""

        def matches(line: str) -> bool:
            event = _json(line)
            return event.get("event") == name and all(event.get(k) == v for k, v in fields.items())

        return _json(self.process.wait_for(matches, timeout)[1])

    def stop(self, timeout: float = 30.0) -> int:
        """Unregister and close as Dubbo's shutdown does; the exit code."""
        self.call("stop")
        code = self.process.wait(timeout)
        self._remove_container()
        return code

    def close(self) -> None:
        """Kill the process (and remove its container) if still there: for cleanups."""
        self.process.kill()
        self._remove_container()

    def _remove_container(self) -> None:
        if self.container is not None:
            with contextlib.suppress(docker.errors.NotFound):
                self.container.remove(force=True)

    def __enter__(self) -> CuratorPeer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def dubbo_metadata(port: int, revision: str, protocol: str = "dubbo") -> dict[str, str]:
    """The metadata Dubbo 3 puts in an instance: its endpoints, its metadata service's URL
    parameters (both JSON strings carrying the port) and its metadata revision."""
    params = {"dubbo": "2.0.2", "port": str(port), "protocol": protocol, "side": "provider",
              "version": "1.0.0"}  # fmt: skip
    return {
        "dubbo.endpoints": json.dumps(
            [{"port": port, "protocol": protocol}], separators=(",", ":")
        ),
        "dubbo.metadata-service.url-params": json.dumps(params, separators=(",", ":")),
        "dubbo.metadata.revision": revision,
        "dubbo.metadata.storage-type": "local",
    }


def _peer_args(
    connect: str, base_path: str, session_timeout_ms: int, listen_port: int | None
) -> list[str]:
    args = ["--zookeeper", connect, "--base-path", base_path]
    args += ["--session-timeout-ms", str(session_timeout_ms)]
    return args + (["--listen-port", str(listen_port)] if listen_port is not None else [])


def _is_reply(line: str) -> bool:
    return "reply" in _json(line)


def _json(line: str) -> dict[str, Any]:
    """A stdout line as JSON; anything else (the JVM's own messages) as an empty object."""
    try:
        parsed = json.loads(line)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}
