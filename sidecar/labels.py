"""Per-container control through labels (Docker labels, or the static mapping's ``[labels]``).

Pure: the labels of one container in, what they ask for (or why they are invalid) out.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

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
_HOST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?")


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


@functools.lru_cache(maxsize=4096)
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
                raise InvalidLabels(f"label {key}={raw!r}: expected true or false")
            enabled = value.lower() in _TRUE
        elif key == ADVERTISE_HOST:
            host = _host(key, value)
        elif key == MODE:
            if value not in MODES:
                raise InvalidLabels(f"label {key}={raw!r}: expected replace or mirror")
            mode = value
        elif key == PERSISTENT_APPLICATION:
            application = _application(key, raw)
        elif key.startswith(PORT):
            ports[_port(key, key.removeprefix(PORT))] = _port(key, value)
        else:
            raise InvalidLabels(f"unknown label {key}")
    return ContainerLabels(enabled, host, tuple(sorted(ports.items())), mode, application)


def normal(labels: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """The sidecar's labels only, sorted: what a Container carries."""
    return tuple(sorted((str(k), str(v)) for k, v in labels if str(k).startswith(PREFIX)))


def _host(key: str, value: str) -> str:
    host = value.strip("[]")
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        if _HOST_NAME.fullmatch(host) and len(host) <= 253:
            return host.lower()
    raise InvalidLabels(f"label {key}={value!r}: not an IP address or host name")


def _application(key: str, raw: str) -> str:
    """An application name as Dubbo registers it (``application`` parameter, instance name):
    compared exactly, so surrounding blanks or control characters are a mistake."""
    if not raw or raw != raw.strip() or not raw.isprintable():
        raise InvalidLabels(f"label {key}={raw[:200]!r}: not an application name")
    return raw


def _port(key: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise InvalidLabels(f"label {key}: {text!r} is not a port")
    return int(text)
