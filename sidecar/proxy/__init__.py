"""Proxy mode: the app's ZooKeeper traffic through its sidecar, registrations right from birth.

``ProxyServer(listen, mapper, log, servers=…)`` relays each client connection to one
ZooKeeper server and rewrites the app's own names in flight (``rewrite``, ``names``), given a
``Mapper`` (``InventoryMapper`` over the app's containers); ``capture`` redirects the app's
connections to it without any change to the app.
"""

from sidecar.proxy.capture import CaptureError
from sidecar.proxy.mapper import InventoryMapper, Mapper, NotMapped
from sidecar.proxy.relay import ProxyServer

__all__ = ["CaptureError", "InventoryMapper", "Mapper", "NotMapped", "ProxyServer"]
