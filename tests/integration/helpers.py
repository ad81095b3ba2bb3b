"""What the integration tests ask of the registry and of a provider container."""

from __future__ import annotations

from docker.models.containers import Container
from kazoo.client import KazooClient

from sidecar import urls
from sidecar.model import Endpoint
from testbed.engine import published_port
from testbed.images import output_lines, wait_for_line


def children(registry: KazooClient, path: str) -> list[str]:
    """The node names under ``path``, sorted (none if it does not exist)."""
    return sorted(registry.get_children(path)) if registry.exists(path) else []


def registered(provider: Container) -> list[str]:
    """Every node path the provider announced it registered, in order."""
    return [line.removeprefix("registered ") for line in output_lines(provider, "registered ")]


def original_name(provider: Container) -> str:
    """The node name of the provider's first registration."""
    return wait_for_line(provider, "registered ").rsplit("/", 1)[1]


def rewritten_name(provider: Container) -> str:
    """That name as the sidecar should rewrite it: 127.0.0.1 and the published 20880."""
    port = published_port(provider, "20880/tcp")
    return urls.parse(original_name(provider)).with_endpoint(Endpoint("127.0.0.1", port))
