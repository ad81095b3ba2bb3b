"""Where Docker is read: containers, port bindings and events (the only docker-py caller).

The engine is only read, never changed. Events only report which container to look at again.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import docker
import docker.errors
import docker.utils
import requests

from sidecar import labels
from sidecar.hosts import parse_port
from sidecar.model import Container, PublishedPort

# Docker actions after which a container's addresses, bindings or health may differ. Podman
# (4.3) filters on its own names for two of them, "died" (it sends "die") and "remove".
CONTAINER_ACTIONS = (
    "start", "restart", "die", "stop", "kill", "destroy", "pause", "unpause",
    "health_status", "rename", "died", "remove",
)  # fmt: skip
NETWORK_ACTIONS = ("connect", "disconnect")
_LOCAL_SOCKET = "unix:///var/run/docker.sock"
_MIN_BACKOFF = 0.25
_MAX_BACKOFF = 8.0


class DockerUnavailable(Exception):
    """The Docker Engine did not answer; the message says how."""


class DockerConfigError(ValueError):
    """The settings to reach the Docker Engine are unusable; the message says which."""


class DockerEngine:
    """A read-only client of one Docker Engine.

    ``url`` None means what the docker CLI would use: ``DOCKER_HOST`` (with
    ``DOCKER_TLS_VERIFY`` and ``DOCKER_CERT_PATH``), else the local socket. Raises
    DockerConfigError when the TLS files are missing.
    """

    def __init__(self, url: str | None, environ: Mapping[str, str], timeout: int = 5) -> None:
        settings = dict(environ)
        if url is not None:
            settings["DOCKER_HOST"] = url
        try:
            kwargs = docker.utils.kwargs_from_env(environment=settings)
        except docker.errors.TLSParameterError as exc:
            raise DockerConfigError(f"Docker TLS: {_describe(exc)}") from None
        self._url = str(kwargs.setdefault("base_url", _LOCAL_SOCKET))
        if not self._url.startswith(("tcp://", "https://")):
            kwargs.pop("tls", None)  # TLS settings concern remote engines only
        self._kwargs = kwargs
        self._timeout = timeout
        self._client: docker.APIClient | None = None

    @property
    def url(self) -> str:
        return self._url

    @property
    def _api(self) -> docker.APIClient:
        # Created on first use: with version="auto" the constructor already asks the daemon.
        if self._client is None:
            kind = _TlsClient if "tls" in self._kwargs else docker.APIClient
            self._client = kind(version="auto", timeout=self._timeout, **self._kwargs)
        return self._client

    def engine_id(self) -> str:
        """``<engine ID>@<host name>``: the ID survives daemon restarts; the host name tells
        apart hosts cloned from one image, which share the ID."""
        info = self._call(lambda: self._api.info())
        if self._is_podman():
            # Podman's Docker-compatible API makes a new ID up on every call; its storage is
            # what stays (rootful Podman and each rootless user have their own).
            root = str(info.get("DockerRootDir", ""))
            return f"podman-{hashlib.sha256(root.encode()).hexdigest()[:32]}@{info.get('Name', '')}"
        return f"{info['ID']}@{info.get('Name', '')}"

    def networks(self) -> tuple[list[str], list[str]]:
        """The subnets of every Docker network on this engine, and their gateways (which are
        addresses of this host)."""
        configs = [
            config
            for network in self._call(lambda: self._api.networks())
            for config in ((network.get("IPAM") or {}).get("Config") or [])
        ]
        subnets = [str(c["Subnet"]) for c in configs if c.get("Subnet")]
        gateways = [str(c["Gateway"]).split("/")[0] for c in configs if c.get("Gateway")]
        return subnets, gateways

    def running_containers(self) -> list[Container]:
        """Every running or paused container, each read with an inspect.

        The list endpoint is only used for IDs: right after ``die`` it can still say
        "running", while inspect reads the container itself.
        """
        filters = {"status": ["running", "paused"]}
        listed = self._call(lambda: self._api.containers(filters=filters))
        found = (self.container(str(doc["Id"])) for doc in listed)
        return [container for container in found if container is not None]

    def container(self, container_id: str) -> Container | None:
        """The container if it is running or paused, else None."""
        try:
            doc = self._call(lambda: self._api.inspect_container(container_id))
        except DockerUnavailable as exc:
            if isinstance(exc.__cause__, docker.errors.NotFound):
                return None
            raise
        status = (doc.get("State") or {}).get("Status")
        return to_container(doc) if status in ("running", "paused") else None

    def events(self) -> EventSubscription:
        """Subscribe to container and network events; the subscription is live on return."""
        stream = self._call(
            lambda: self._api.events(
                decode=True,
                filters={
                    "type": ["container", "network"],
                    "event": [*CONTAINER_ACTIONS, *NETWORK_ACTIONS],
                },
            )
        )
        return EventSubscription(stream)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def _is_podman(self) -> bool:
        version = self._call(lambda: self._api.version())
        return any(c.get("Name") == "Podman Engine" for c in version.get("Components") or [])

    def _call(self, request: Callable[[], Any]) -> Any:
        try:
            return request()
        except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
            raise DockerUnavailable(f"Docker Engine at {self._url}: {_describe(exc)}") from exc


class _TlsClient(docker.APIClient):
    """A client whose CA is the engine's own: requests would let REQUESTS_CA_BUNDLE (set in
    many images) replace it. The constructor already connects, hence a fixed attribute."""

    trust_env = property(lambda self: False, lambda self, value: None)


class EventSubscription:
    """An open event stream yielding the IDs of containers that may have changed."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._closed = threading.Event()

    def container_ids(self) -> Iterator[str]:
        """Yield container IDs until the stream ends; raise DockerUnavailable if it breaks."""
        try:
            for event in self._stream:
                container_id = _container_of(event)
                if container_id:
                    yield container_id
        except (requests.RequestException, OSError, ValueError, AttributeError) as exc:
            # A stream closed from another thread surfaces as any of these; that is a normal end.
            if not self._closed.is_set():
                raise DockerUnavailable(f"event stream broke: {_describe(exc)}") from exc

    def close(self) -> None:
        self._closed.set()
        try:
            self._stream.close()
        except Exception:  # ssh:// streams refuse to close early; the thread is a daemon
            return


class DockerWatch:
    """Keeps an event subscription open, re-subscribing with backoff, and reports what changed.

    Callbacks run on the watch thread and must only record what happened.
    """

    def __init__(
        self,
        engine: DockerEngine,
        on_container: Callable[[str], None],
        on_subscribed: Callable[[], None],
        on_lost: Callable[[str], None],
    ) -> None:
        self._engine = engine
        self._on_container = on_container
        self._on_subscribed = on_subscribed
        self._on_lost = on_lost
        self._stopping = threading.Event()
        self._subscription: EventSubscription | None = None
        self._thread = threading.Thread(target=self._run, name="docker-events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Close the stream; the thread (a daemon) ends on its own."""
        self._stopping.set()
        if self._subscription is not None:
            self._subscription.close()

    def _run(self) -> None:
        delay = _MIN_BACKOFF
        while not self._stopping.is_set():
            try:
                self._subscription = self._engine.events()
                if self._stopping.is_set():
                    self._subscription.close()
                    return
                delay = _MIN_BACKOFF
                self._on_subscribed()
                for container_id in self._subscription.container_ids():
                    self._on_container(container_id)
                problem = "event stream ended (daemon restarted?)"
            except DockerUnavailable as exc:
                problem = str(exc)
            if self._stopping.is_set():
                return
            self._on_lost(problem)
            self._stopping.wait(delay)
            delay = min(delay * 2, _MAX_BACKOFF)


def to_container(doc: dict[str, Any]) -> Container:
    """A container from the body of ``GET /containers/{id}/json``."""
    network_mode = str((doc.get("HostConfig") or {}).get("NetworkMode") or "")
    # A container in another's network namespace (--network container:…, a Podman pod's
    # members) has no addresses or bindings of its own: Docker shows none, Podman repeats
    # the owner's, which would make every address of the namespace ambiguous.
    settings = {} if network_mode.startswith("container:") else doc.get("NetworkSettings") or {}
    addresses = tuple(
        address
        for network in (settings.get("Networks") or {}).values()
        for address in (network.get("IPAddress"), network.get("GlobalIPv6Address"))
        if address
    )
    published = _published(settings.get("Ports") or {})
    state = doc.get("State") or {}
    health = (state.get("Health") or {}).get("Status")
    not_serving = "paused" if state.get("Paused") else "unhealthy" if health == "unhealthy" else ""
    container_labels = ((doc.get("Config") or {}).get("Labels") or {}).items()
    return Container(
        id=str(doc["Id"]),
        name=str(doc.get("Name") or doc["Id"][:12]).lstrip("/"),
        network_mode=network_mode,
        addresses=addresses,
        published=published,
        not_serving=not_serving,
        labels=labels.normal(container_labels),
    )


def _published(ports: dict[str, Any]) -> tuple[PublishedPort, ...]:
    """The TCP bindings of ``NetworkSettings.Ports``; one that is not a port (the Engine never
    sends such, a proxy in front of it might) is skipped rather than failing the listing."""
    found = []
    for key, bindings in ports.items():
        port, _, protocol = str(key).partition("/")
        if protocol != "tcp" or not isinstance(bindings, list):
            continue
        for binding in bindings:
            if not isinstance(binding, dict) or not binding.get("HostPort"):
                continue  # exposed, not published
            try:
                container_port, host_port = parse_port(port), parse_port(binding["HostPort"])
            except ValueError:
                continue
            found.append(PublishedPort(container_port, str(binding.get("HostIp") or ""), host_port))
    return tuple(found)


def _container_of(event: dict[str, Any]) -> str | None:
    actor = event.get("Actor") or {}
    if event.get("Type") == "network":
        if event.get("Action") not in NETWORK_ACTIONS:
            return None
        # Docker names the network as the actor and the container in an attribute; Podman
        # names the container as the actor.
        return (actor.get("Attributes") or {}).get("container") or actor.get("ID")
    return actor.get("ID") or event.get("id")


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
