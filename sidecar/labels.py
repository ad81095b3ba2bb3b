"""Per-container control through labels (Docker labels, or the static mapping's ``[labels]``).

Pure: the labels of one container in, what they ask for (or why they are invalid) out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sidecar.memo import sized_cache
from sidecar.syntax import normal_host, parse_port, quote, shorten

PREFIX = "dubbo-nat-sidecar."
ENABLE = PREFIX + "enable"
ADVERTISE_HOST = PREFIX + "advertise-host"
PORT = PREFIX + "port."
MODE = PREFIX + "mode"
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

    def external_port(self, container_port: int) -> int | None:
        return dict(self.ports).get(container_port)


class InvalidLabels(ValueError):
    """A label with this sidecar's prefix that it cannot follow; the message says which."""


# Cached: every pass asks for each container's labels, which rarely change.
@sized_cache(budget=1 << 20, cost=lambda pairs: sum(len(k) + len(v) for k, v in pairs))
def parse(labels: tuple[tuple[str, str], ...]) -> ContainerLabels:
    """The sidecar's labels among a container's labels; raise InvalidLabels for a bad one.

    Unknown keys under the prefix are errors too: a typo must not silently change nothing.
    """
    enabled, host, mode = True, None, None
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
        elif key.startswith(PORT):
            ports[_port(key, key.removeprefix(PORT))] = _port(key, value)
        else:
            raise InvalidLabels(f"unknown label {shorten(key)}")
    return ContainerLabels(enabled, host, tuple(sorted(ports.items())), mode)


def normal(labels: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """The sidecar's labels only, sorted: what a Container carries."""
    return tuple(sorted((str(k), str(v)) for k, v in labels if str(k).startswith(PREFIX)))


def _host(key: str, value: str) -> str:
    try:
        return normal_host(value)
    except ValueError:
        raise InvalidLabels(f"label {key}={quote(value)}: not an IP address or host name") from None


def _port(key: str, text: str) -> int:
    try:
        return parse_port(text)
    except ValueError as exc:
        raise InvalidLabels(f"label {shorten(key)}: {exc}") from None
