"""Per-container control through labels (Docker labels, or the static mapping's ``[labels]``).

Pure: the labels of one container in, what they ask for (or why they are invalid) out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sidecar.hosts import normal_host, parse_port
from sidecar.quoting import quote, shorten

PREFIX = "dubbo-nat-sidecar."
ENABLE = PREFIX + "enable"
ADVERTISE_HOST = PREFIX + "advertise-host"
PORT = PREFIX + "port."
MODE = PREFIX + "mode"
# Persistent registrations (no session proves their host) of this application are this
# container's: the operator says so.
PERSISTENT_APPLICATION = PREFIX + "persistent-application"
MODES = ("replace", "mirror")
_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off")


@dataclass(frozen=True)
class ContainerLabels:
    """What a container's labels ask for; ``None`` fields: the sidecar's own setting applies."""

    enabled: bool = True
    advertise_host: str | None = None
    ports: tuple[tuple[int, int], ...] = ()  # container port -> port consumers dial
    mode: str | None = None
    persistent_application: str | None = None

    def external_port(self, container_port: int) -> int | None:
        return dict(self.ports).get(container_port)


class InvalidLabels(ValueError):
    """A label with this sidecar's prefix that it cannot follow; the message says which."""


def parse(labels: tuple[tuple[str, str], ...]) -> ContainerLabels:
    """The sidecar's labels among a container's labels; raise InvalidLabels for a bad one.

    Unknown keys under the prefix are errors too: a typo must not silently change nothing.
    """
    enabled, host, mode, application = True, None, None, None
    ports: dict[int, int] = {}
    for key, raw in labels:
        if not key.startswith(PREFIX):
            continue
        value = raw.strip()
        if key == ENABLE:
            if value.lower() not in (*_TRUE, *_FALSE):
                raise InvalidLabels(f"label {key}={quote(raw)}: expected true or false")
            enabled = value.lower() in _TRUE
        elif key == ADVERTISE_HOST:
            host = _host(key, value)
        elif key == MODE:
            if value not in MODES:
                raise InvalidLabels(f"label {key}={quote(raw)}: expected replace or mirror")
            mode = value
        elif key == PERSISTENT_APPLICATION:
            application = _application(key, raw)
        elif key.startswith(PORT):
            ports[_port(key, key.removeprefix(PORT))] = _port(key, value)
        else:
            raise InvalidLabels(f"unknown label {shorten(key)}")
    return ContainerLabels(enabled, host, tuple(sorted(ports.items())), mode, application)


def normal(labels: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """The sidecar's labels only, sorted: what a Container carries."""
    return tuple(sorted((str(k), str(v)) for k, v in labels if str(k).startswith(PREFIX)))


def _host(key: str, value: str) -> str:
    try:
        return normal_host(value)
    except ValueError:
        raise InvalidLabels(f"label {key}={quote(value)}: not an IP address or host name") from None


def _application(key: str, raw: str) -> str:
    """An application name as Dubbo registers it (``application`` parameter, instance name):
    compared exactly, so surrounding blanks or control characters are a mistake."""
    if not raw or raw != raw.strip() or not raw.isprintable():
        raise InvalidLabels(f"label {key}={raw[:200]!r}: not an application name")
    return raw


def _port(key: str, text: str) -> int:
    try:
        return parse_port(text)
    except ValueError as exc:
        raise InvalidLabels(f"label {shorten(key)}: {exc}") from None
