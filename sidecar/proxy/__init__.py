"""Proxy mode: the app's ZooKeeper traffic through its sidecar, registrations right from birth.

``ProxyServer(listen, mapper, log, servers=…)`` (``relay``) relays each client connection to
one ZooKeeper server (``connection``) and renames the app's own endpoints in flight: requests
out (``requests``), replies and events back (``replies``), by the names the app uses
(``names``, over the ``jute`` codec), given a ``Mapper`` (``InventoryMapper`` over the app's
containers); its live registrations follow a change of mapping (``repoint``); with
``capture_ports`` it redirects the app's connections to itself (``capture``).
"""

from sidecar.proxy.capture import CaptureError
from sidecar.proxy.mapper import InventoryMapper, Mapper, NotMapped
from sidecar.proxy.relay import ProxyServer

__all__ = ["CaptureError", "InventoryMapper", "Mapper", "NotMapped", "ProxyServer"]
