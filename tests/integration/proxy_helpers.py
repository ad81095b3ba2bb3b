"""What the proxy tests share: the app's mapping, its names, recorded log events and listings."""

from __future__ import annotations

import logging
import threading
from collections.abc import MutableMapping, Sequence
from typing import Any, NoReturn

import structlog
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError
from kazoo.recipe.watchers import ChildrenWatch
from structlog.typing import FilteringBoundLogger

from sidecar import urls
from sidecar.model import Container, Endpoint
from sidecar.proxy import InventoryMapper, ProxyServer
from sidecar.sources.static import StaticMapping
from sidecar.tls import ClientTls
from testbed.dubbo_url import provider_node_name, provider_url
from testbed.polling import wait_until

from .conftest import INTERFACE

ADDRESS = "10.98.7.5"  # the app's container address in the static mapping
ADVERTISED = "127.0.0.1"
PORTS = {20880: 32768, 50051: 40051}


def app_mapper() -> InventoryMapper:
    """The app at ADDRESS publishing PORTS, advertised at ADVERTISED (a static mapping)."""
    mapper = InventoryMapper()
    mapper.update([static_container()], ADVERTISED)
    return mapper


def static_container() -> Container:
    """The app as the static mapping describes it."""
    container = StaticMapping(tuple(PORTS.items()), (ADDRESS,)).container(())
    assert container is not None
    return container


def node_name(port: int = 20880, protocol: str = "dubbo", host: str = ADDRESS) -> str:
    """A provider node name as a Java Dubbo provider writes it."""
    fixed = {"pid": "4242", "timestamp": "1795889781982"}
    return provider_node_name(provider_url(protocol, host, port, INTERFACE, "shop", extra=fixed))


def published(name: str) -> str:
    """``name`` as the proxy publishes it."""
    url = urls.parse(name)
    return url.with_endpoint(Endpoint(ADVERTISED, PORTS[url.endpoint.port]))


class Events(list[dict[str, Any]]):
    """Every log event of a logger handed to the proxy (a structlog processor)."""

    def __call__(self, logger: object, method: str, event: MutableMapping[str, Any]) -> NoReturn:
        self.append({**event, "level": method})
        raise structlog.DropEvent

    def named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in list(self) if e["event"] == name]

    def logger(self) -> FilteringBoundLogger:
        wrapper = structlog.make_filtering_bound_logger(logging.DEBUG)
        logger: FilteringBoundLogger = structlog.wrap_logger(
            None, processors=[self], wrapper_class=wrapper
        )
        return logger


class Sentinel:
    """Reads every node under ``path`` every 50 ms until stopped, name and data: none may
    carry the app's container address (``seen`` lists those that did)."""

    def __init__(self, registry: KazooClient, path: str) -> None:
        self.seen: list[str] = []
        self._registry, self._path = registry, path
        registry.ensure_path(path)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            for name in self._registry.get_children(self._path):
                try:
                    data = self._registry.get(f"{self._path}/{name}")[0] or b""
                except NoNodeError:  # deleted since the listing
                    data = b""
                if ADDRESS in name or ADDRESS.encode() in data:
                    self.seen.append(name)

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join(5)
        return self.seen


class Listings:
    """Every listing of a path a direct (unproxied) consumer's children watch has seen."""

    def __init__(self, client: KazooClient, path: str) -> None:
        self.seen: list[list[str]] = []
        self._lock = threading.Lock()
        client.ensure_path(path)
        ChildrenWatch(client, path, self._record)

    def _record(self, children: list[str]) -> None:
        with self._lock:
            self.seen.append(sorted(children))

    def all(self) -> list[list[str]]:
        with self._lock:
            return list(self.seen)

    def wait_for(self, name: str, timeout: float = 10.0) -> None:
        wait_until(lambda: any(name in s for s in self.all()), timeout, message=f"{name} unseen")

    def since(self, name: str) -> list[list[str]]:
        """The listings from the first one holding ``name`` on."""
        seen = self.all()
        first = next(i for i, listing in enumerate(seen) if name in listing)
        return seen[first:]


def proxy_for(
    servers: Sequence[tuple[str, int]],
    events: Events,
    mapper: InventoryMapper | None = None,
    *,
    port: int = 0,
    services_root: str = "/services",
    tls: ClientTls | None = None,
) -> ProxyServer:
    """A started in-process proxy for ``servers`` on ``port`` (any free one unless given),
    the app's mapping unless ``mapper``."""
    proxy = ProxyServer(
        ("127.0.0.1", port), mapper or app_mapper(), events.logger(), servers=list(servers),
        services_roots=[services_root], tls=tls,
    )  # fmt: skip
    proxy.start()
    return proxy


def client_of(proxy: ProxyServer, timeout: float = 10.0) -> KazooClient:
    """A started kazoo client whose server is the proxy."""
    client = KazooClient(hosts=f"127.0.0.1:{proxy.address[1]}", timeout=timeout)
    client.start(timeout=15)
    return client
